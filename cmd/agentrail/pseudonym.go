package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/agentrail/agentrail/consumers/redact"
)

// pseudonymCmd is `agentrail pseudonym --config FILE < values`: the
// pseudonym ingest stores for each value read from stdin, one per line, so
// an investigator who may use the redaction secret can find the events
// about a known person or account. Values are read from stdin, not
// arguments, to keep them out of shell history and process lists.
type pseudonymCmd struct {
	connFlags
}

func (c *pseudonymCmd) Run(g *globals) error {
	cfg, err := c.load()
	if err != nil {
		return err
	}
	r, err := redact.New(cfg.Redaction)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		p, err := r.Pseudonym(sc.Text())
		if err != nil {
			return err
		}
		fmt.Fprintln(g.stdout, p)
	}
	return sc.Err()
}
