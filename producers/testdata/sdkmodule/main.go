// Command sdkmodule is an agent team's program in a module of its own: it
// configures the agentrail Go SDK with TLS and SASL from outside this
// repository, the way an agent team would, and emits one intent.
// TestSDKFromAnotherModule builds and runs it.
//
// AGENTRAIL_SDK_MODE picks how Kafka security is set: "config" through the
// SDK's KafkaConfig (CA file, SCRAM password from an environment variable),
// "opts" through franz-go options in KafkaOpts alone (a tls.Config and a
// SASL mechanism built in code). It prints the intent's trace id.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/agentrail/agentrail/producers"
	"github.com/agentrail/agentrail/schemas"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sdkmodule:", err)
		os.Exit(1)
	}
}

func run() error {
	brokers := strings.Split(os.Getenv("AGENTRAIL_SDK_BROKERS"), ",")
	caFile := os.Getenv("AGENTRAIL_SDK_CA_FILE")
	user := os.Getenv("AGENTRAIL_SDK_USER")
	cfg := producers.Config{
		Kafka: producers.KafkaConfig{Brokers: brokers, ClientID: "agent-team-sdk"},
		Agent: schemas.Agent{ID: "billing-bot", Team: "finance", Version: "1.0.0"},
	}
	switch mode := os.Getenv("AGENTRAIL_SDK_MODE"); mode {
	case "config":
		cfg.Kafka.TLS = &producers.KafkaTLS{CAFile: caFile, ServerName: "localhost"}
		cfg.Kafka.SASL = &producers.KafkaSASL{Mechanism: "SCRAM-SHA-256", Username: user, PasswordEnv: "AGENTRAIL_SDK_PASSWORD"}
	case "opts":
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		auth := scram.Auth{User: user, Pass: os.Getenv("AGENTRAIL_SDK_PASSWORD")}
		cfg.KafkaOpts = []kgo.Opt{
			kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}),
			kgo.SASL(auth.AsSha256Mechanism()),
		}
	default:
		return fmt.Errorf("AGENTRAIL_SDK_MODE %q: want config or opts", mode)
	}
	em, err := producers.New(cfg, prometheus.NewRegistry(), nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	act := producers.Action{RequestedBy: "alice@acme.test", Tier: 1}
	if _, err := em.Intent(ctx, &act, schemas.Intent{Tool: "crm", Action: "read", Target: "account:1", ActionClass: "read"}); err != nil {
		return err
	}
	if err := em.Close(ctx); err != nil {
		return err
	}
	fmt.Println(act.Trace.TraceID)
	return nil
}
