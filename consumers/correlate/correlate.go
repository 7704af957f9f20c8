// Package correlate joins the intent, policy decision, approval and result
// events of each trace into a trace record and flags governance violations.
package correlate

// Config configures correlation.
type Config struct{}

// Defaults fills unset fields.
func (c *Config) Defaults() {}

// Validate checks the settings without I/O.
func (c *Config) Validate() error { return nil }
