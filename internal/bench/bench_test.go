package bench

import (
	"strings"
	"testing"
)

// TestValidateNamesTheFlag: every out-of-range setting is refused with an
// error naming its flag, and the defaults pass.
func TestValidateNamesTheFlag(t *testing.T) {
	ok := Config{}
	ok.defaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for flag, mutate := range map[string]func(*Config){
		"--events":       func(c *Config) { c.Events = 10 },
		"--runs":         func(c *Config) { c.Runs = 21 },
		"--query-events": func(c *Config) { c.QueryEvents = 1 },
		"--batch-rows":   func(c *Config) { c.BatchRows = -1 },
		"--fresh-rate":   func(c *Config) { c.FreshRate = -5 },
		"--only":         func(c *Config) { c.Only = []string{"ours", "nope"} },
	} {
		c := ok
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s: got %v, want an error naming it", flag, err)
		}
	}
	c := ok
	c.BatchRows = 100_000
	if err := c.Validate(); err != nil {
		t.Errorf("--batch-rows 100000: %v", err)
	}
}
