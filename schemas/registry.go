package schemas

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/twmb/franz-go/pkg/sr"
)

// Subject is the schema registry subject the Event schema is registered
// under: the events topic's value subject (TopicNameStrategy).
func Subject(topic string) string { return topic + "-value" }

// Register registers the latest Event schema under the topic's subject and
// returns its id, for NewConfluentEncoder.
func Register(ctx context.Context, cl *sr.Client, topic string) (int, error) {
	text, err := SchemaText(Latest().N)
	if err != nil {
		return 0, err
	}
	ss, err := cl.CreateSchema(ctx, Subject(topic), sr.Schema{Schema: text, Type: sr.TypeAvro})
	if err != nil {
		return 0, fmt.Errorf("schemas: register schema under %s: %w", Subject(topic), err)
	}
	return ss.ID, nil
}

func isNotFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}
