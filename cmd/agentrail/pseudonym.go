package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/agentrail/agentrail/consumers/redact"
)

// runPseudonym is `agentrail pseudonym --config FILE < values`: the
// pseudonym ingest stores for each value read from stdin, one per line, so
// an investigator who may use the redaction secret can find the events
// about a known person or account. Values are read from stdin, not
// arguments, to keep them out of shell history and process lists.
func runPseudonym(_ context.Context, args []string) int {
	fs := flag.NewFlagSet("pseudonym", flag.ContinueOnError)
	var f connFlags
	f.register(fs)
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := f.load()
	if err != nil {
		return exitCode("pseudonym", err)
	}
	r, err := redact.New(cfg.Redaction)
	if err != nil {
		return exitCode("pseudonym", err)
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		p, err := r.Pseudonym(sc.Text())
		if err != nil {
			return exitCode("pseudonym", err)
		}
		fmt.Println(p)
	}
	return exitCode("pseudonym", sc.Err())
}
