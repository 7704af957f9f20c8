// Package reports builds the weekly permission reports, mails them on a
// schedule, and enforces tier-based retention.
package reports

// Config configures reports, mail and retention.
type Config struct{}

// Defaults fills unset fields.
func (c *Config) Defaults() {}

// Validate checks the settings without I/O.
func (c *Config) Validate() error { return nil }
