package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/agentrail/agentrail/producers"
)

func runReplay(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var pf producerFlags
	pf.register(fs, "none") // a JSON file is no evidence of who wrote it
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agentrail replay [flags] FILE.jsonl   (- reads stdin)")
		fs.PrintDefaults()
	}
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "agentrail replay: want exactly one FILE.jsonl argument (- for stdin)")
		return 2
	}
	var in io.Reader = os.Stdin
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return exitCode("replay", err)
		}
		defer f.Close()
		in = f
	}

	log := newLogger()
	em, failed, err := pf.emitter(ctx, log)
	if err != nil {
		return exitCode("replay", err)
	}
	rep, replayErr := producers.Replay(ctx, in, em.Emit, time.Now)
	closeErr := closeEmitter(em)

	for _, r := range rep.Rejections {
		fmt.Fprintf(os.Stderr, "line %d: %s\n", r.Line, r.Reason)
	}
	if more := rep.Rejected - len(rep.Rejections); more > 0 {
		fmt.Fprintf(os.Stderr, "... and %d more rejected lines\n", more)
	}
	fmt.Printf("read %d, published %d, rejected %d%s\n", rep.Read, rep.Published, rep.Rejected, failedSummary(failed.Load()))
	if code := exitCode("replay", errors.Join(replayErr, closeErr)); code != 0 {
		return code
	}
	if rep.Rejected > 0 {
		return 1
	}
	return 0
}
