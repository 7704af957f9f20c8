// Package anomaly evaluates rules over the live event stream and raises
// alerts.
package anomaly

// Config configures the rule engine.
type Config struct{}

// Defaults fills unset fields.
func (c *Config) Defaults() {}

// Validate checks the settings without I/O.
func (c *Config) Validate() error { return nil }
