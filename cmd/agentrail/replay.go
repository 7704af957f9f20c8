package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/agentrail/agentrail/producers"
)

type replayCmd struct {
	producerFlags `embed:"" set:"sign=none"` // a JSON file is no evidence of who wrote it
	File          string                     `arg:"" name:"file" help:"FILE.jsonl of canonical-JSON events, one per line (- reads stdin)"`
	JSON          bool                       `name:"json" help:"print the result, with the rejected lines, as one JSON object"`
}

type replayRejection struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

func (c *replayCmd) Run(ctx context.Context, g *globals) error {
	var in io.Reader = os.Stdin
	if c.File != "-" {
		f, err := os.Open(c.File)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	em, failed, err := c.emitter(ctx, g.logger(slog.LevelInfo))
	if err != nil {
		return err
	}
	rep, replayErr := producers.Replay(ctx, in, em.Emit, time.Now)
	closeErr := closeEmitter(em)

	if c.JSON {
		rej := make([]replayRejection, 0, len(rep.Rejections))
		for _, r := range rep.Rejections {
			rej = append(rej, replayRejection{r.Line, r.Reason})
		}
		if err := g.printJSON(struct {
			Read           int               `json:"read"`
			Published      int               `json:"published"`
			Rejected       int               `json:"rejected"`
			FailedDelivery int64             `json:"failed_delivery"`
			Rejections     []replayRejection `json:"rejections"`
		}{rep.Read, rep.Published, rep.Rejected, failed.Load(), rej}); err != nil {
			return err
		}
	} else {
		for _, r := range rep.Rejections {
			fmt.Fprintf(g.stderr, "line %d: %s\n", r.Line, r.Reason)
		}
		if more := rep.Rejected - len(rep.Rejections); more > 0 {
			fmt.Fprintf(g.stderr, "... and %d more rejected lines\n", more)
		}
		fmt.Fprintf(g.stdout, "read %d, published %d, rejected %d%s\n", rep.Read, rep.Published, rep.Rejected, failedSummary(failed.Load()))
	}
	if err := errors.Join(replayErr, closeErr); err != nil {
		return err
	}
	if rep.Rejected > 0 {
		return finding(nil)
	}
	return nil
}
