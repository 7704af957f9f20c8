package producers

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/schemas"
)

// TestSDKFromAnotherModule builds testdata/sdkmodule as a module of its own
// (so the Go toolchain enforces that it names no internal package) and runs
// it against a broker that requires TLS and SASL/SCRAM: once with security
// set through KafkaConfig, once through KafkaOpts alone. Each run's intent
// must arrive, readable, over the secured connection.
func TestSDKFromAnotherModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module: not in -short")
	}
	_, self, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(self))
	dir := t.TempDir()
	serverTLS, caFile := testenv.SelfSignedTLS(t, dir)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(serverTLS), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "agent-team", "s3cret"), kfake.SeedTopics(1, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	mod := filepath.Join(dir, "mod")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod := "module example.test/agentteam\n\ngo 1.26\n\nrequire github.com/agentrail/agentrail v0.0.0\n\nreplace github.com/agentrail/agentrail => " + repo + "\n"
	copyFile(t, filepath.Join(repo, "go.sum"), filepath.Join(mod, "go.sum"))
	copyFile(t, filepath.Join(repo, "producers", "testdata", "sdkmodule", "main.go"), filepath.Join(mod, "main.go"))
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sdkmodule")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = mod
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the outside module: %v\n%s", err, out)
	}

	want := map[string]string{}
	for _, mode := range []string{"config", "opts"} {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "AGENTRAIL_SDK_MODE="+mode, "AGENTRAIL_SDK_BROKERS="+strings.Join(c.ListenAddrs(), ","),
			"AGENTRAIL_SDK_CA_FILE="+caFile, "AGENTRAIL_SDK_USER=agent-team", "AGENTRAIL_SDK_PASSWORD=s3cret")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("mode %s: %v\n%s", mode, err, exitStderr(err))
		}
		want[strings.TrimSpace(string(out))] = mode
	}

	pool, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	kc := KafkaConfig{Brokers: c.ListenAddrs(), TLS: &KafkaTLS{CAFile: caFile, ServerName: "localhost"}}
	kc.Defaults()
	opts, err := kc.Opts()
	if err != nil || len(pool) == 0 {
		t.Fatal(err)
	}
	opts = append(opts, kgo.SASL(scram.Auth{User: "agent-team", Pass: "s3cret"}.AsSha256Mechanism()),
		kgo.ConsumeTopics(testTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("intents not received from modes %v", want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		for _, r := range fs.Records() {
			var ev schemas.Event
			if err := dec.Decode(ctx, r.Value, &ev); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if ev.Agent.ID != "billing-bot" || ev.Intent == nil || ev.Intent.Tool != "crm" {
				t.Fatalf("unexpected event %+v", ev)
			}
			delete(want, ev.TraceID)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
