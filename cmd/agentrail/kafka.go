package main

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/kafkacfg"
)

func newKafkaClient(kc kafkacfg.Config, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := kc.Opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}
