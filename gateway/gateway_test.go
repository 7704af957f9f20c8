package gateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/gateway/ndjson"
	"github.com/agentrail/agentrail/internal/broker"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

var quiet = slog.New(slog.DiscardHandler)

// Test keys: billing-bot signs with ed25519 (seed 32 × 7), support-bot
// with another ed25519 key (seed 32 × 9).
var (
	billingSeed = bytes.Repeat([]byte{7}, ed25519.SeedSize)
	supportSeed = bytes.Repeat([]byte{9}, ed25519.SeedSize)
)

func writeRegistry(t *testing.T) string {
	t.Helper()
	pub := func(seed []byte) string {
		return signing.EncodePublicKey(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
	}
	reg := filepath.Join(t.TempDir(), "registry.yaml")
	if err := os.WriteFile(reg, []byte(fmt.Sprintf("agents:\n"+
		"  - id: billing-bot\n    team: finance\n    keys:\n      - {id: billing-bot-1, alg: ed25519, public_key: %s}\n"+
		"  - id: support-bot\n    team: support\n    keys:\n      - {id: support-bot-1, alg: ed25519, public_key: %s}\n",
		pub(billingSeed), pub(supportSeed))), 0o644); err != nil {
		t.Fatal(err)
	}
	return reg
}

// testGateway runs a gateway in front of brokers (an embedded broker when
// nil) and returns its base URL once it is ready (unless brokers is set:
// then the caller decides).
func testGateway(t *testing.T, brokers []string, mutate func(*Config)) (*Gateway, string, *prometheus.Registry) {
	t.Helper()
	var cfg Config
	cfg.Listen = "127.0.0.1:0"
	cfg.RegistryFile = writeRegistry(t)
	cfg.Kafka.Brokers = brokers
	cfg.Defaults()
	if brokers == nil {
		c, err := broker.Start(broker.Config{Partitions: 3, Topics: []string{cfg.Kafka.Topics.Events}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		cfg.Kafka.Brokers = c.ListenAddrs()
	}
	if mutate != nil {
		mutate(&cfg)
	}
	reg := prometheus.NewRegistry()
	g, err := New(context.Background(), cfg, reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	url := "http://" + g.Addr().String()
	if brokers == nil {
		waitReady(t, url)
	}
	return g, url, reg
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url + PathReadyz); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the gateway never became ready")
}

var evSeq int

// event returns a valid intent of agent (billing-bot or support-bot, of
// team finance or support), as JSON, with mutate applied.
func event(t *testing.T, agent string, mutate func(*schemas.Event)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "schemas", "testdata", "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := schemas.ParseJSON(bytes.SplitN(b, []byte("\n"), 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	evSeq++
	e.EventID = fmt.Sprintf("gw-%d-%d", time.Now().UnixNano(), evSeq)
	e.TraceID = fmt.Sprintf("%032x", time.Now().UnixNano()+int64(evSeq))
	e.Time = time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond)
	if agent != "billing-bot" {
		e.Agent.ID, e.Agent.Team = agent, "support"
		e.Intent.ActionDigest = schemas.ActionDigest(agent, e.Intent.Tool, e.Intent.Action, e.Intent.Target, e.Intent.Parameters)
	}
	if mutate != nil {
		mutate(e)
	}
	js, err := schemas.AppendJSON(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// signed is the NDJSON line of event signed by seed under kid.
func signed(kid string, seed, event []byte) []byte {
	return ndjson.Append(nil, kid, ed25519.Sign(ed25519.NewKeyFromSeed(seed), event), event)
}

func post(t *testing.T, url, contentType string, body []byte) (int, http.Header, Response) {
	t.Helper()
	resp, err := http.Post(url+PathEvents, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r Response
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, r
}

const secret = "sk-live-PLANTED0123456789" // in every bad value: never in an answer

func TestEventsEndpoint(t *testing.T) {
	_, url, reg := testGateway(t, nil, func(c *Config) {
		c.MaxBodyBytes, c.MaxLineBytes, c.MaxLines = 64<<10, 4<<10, 5
	})
	good := func() []byte { return signed("billing-bot-1", billingSeed, event(t, "billing-bot", nil)) }
	bad := func(mutate func(*schemas.Event)) []byte {
		return signed("billing-bot-1", billingSeed, event(t, "billing-bot", mutate))
	}
	ev := event(t, "billing-bot", nil)
	tampered := signed("billing-bot-1", billingSeed, ev)
	tampered = bytes.Replace(tampered, []byte(`"120.00"`), []byte(`"920.00"`), 1)
	joined := func(lines ...[]byte) []byte { return append(bytes.Join(lines, []byte("\n")), '\n') }
	type line struct {
		status, field, reason string
	}
	for _, tc := range []struct {
		name        string
		ctype       string
		body        []byte
		code        int
		lines       []line
		errContains string
	}{
		{"all accepted", "application/x-ndjson", joined(good(), good()), 200, []line{{"accepted", "", ""}, {"accepted", "", ""}}, ""},
		{"charset and CRLF", "application/x-ndjson; charset=utf-8", []byte(string(good()) + "\r\n" + string(good())), 200, []line{{"accepted", "", ""}, {"accepted", "", ""}}, ""},
		{"mixed", "application/x-ndjson", joined(good(),
			bad(func(e *schemas.Event) { e.Intent.ActionDigest = secret }),
			bad(func(e *schemas.Event) { e.TraceID = secret }),
			[]byte(`{"kid":"billing-bot-1","sig":"AA==","event":{"event_id":"`+secret+`"}}`),
			tampered), 200, []line{
			{"accepted", "", ""},
			{"rejected", "intent.action_digest", ""},
			{"rejected", "trace_id", ""},
			{"rejected", "sig", "bad_signature"},
			{"rejected", "sig", "bad_signature"},
		}, ""},
		{"all rejected: content", "application/x-ndjson", joined(
			bad(func(e *schemas.Event) { e.Tier = 9 }),
			[]byte(`{"kid":"billing-bot-1","sig":"AA==","event":{}}  x`+secret),
			bad(func(e *schemas.Event) { e.Intent = nil }),
		), 422, []line{{"rejected", "tier", ""}, {"rejected", "", "trailing"}, {"rejected", "event_type", "exactly one"}}, "every line"},
		{"all rejected: signatures", "application/x-ndjson", joined(
			signed("nobody-1", billingSeed, ev),
			signed("billing-bot-1", supportSeed, ev),
			tampered,
		), 401, []line{{"rejected", "kid", "unknown_key"}, {"rejected", "sig", "bad_signature"}, {"rejected", "sig", "bad_signature"}}, "signature"},
		{"event_time ahead", "application/x-ndjson", joined(bad(func(e *schemas.Event) { e.Time = time.Now().Add(2 * time.Hour) })), 422, []line{{"rejected", "event_time", ""}}, ""},
		{"identity mismatch", "application/x-ndjson", joined(signed("support-bot-1", supportSeed, ev)), 422, []line{{"rejected", "agent.agent_id", "identity_mismatch"}}, ""},
		{"unknown event field", "application/x-ndjson", joined(signed("billing-bot-1", billingSeed, []byte(`{"event_id":"x","`+secret+`":1}`))), 422, []line{{"rejected", "event", "unknown field"}}, ""},
		{"unknown event field, named", "application/x-ndjson", joined(signed("billing-bot-1", billingSeed, []byte(`{"event_id":"x","bogus_field":1}`))), 422, []line{{"rejected", "bogus_field", "unknown field"}}, ""},
		{"line too long", "application/x-ndjson", joined(good(), bytes.Repeat([]byte("x"), 5<<10)), 200, []line{{"accepted", "", ""}, {"rejected", "", "max_line_bytes"}}, ""},
		{"empty line", "application/x-ndjson", joined(good(), nil, good()), 200, []line{{"accepted", "", ""}, {"rejected", "", "empty line"}, {"accepted", "", ""}}, ""},
		{"too many lines", "application/x-ndjson", joined(good(), good(), good(), good(), good(), good()), 413, nil, "limit of 5 lines"},
		{"body too large", "application/x-ndjson", bytes.Repeat([]byte("x"), 65<<10), 413, nil, "limit of 65536 bytes"},
		{"empty body", "application/x-ndjson", nil, 400, nil, "no lines"},
		{"wrong content type", "application/json", joined(good()), 415, nil, "application/x-ndjson"},
		{"no content type", "", joined(good()), 415, nil, "application/x-ndjson"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, r := post(t, url, tc.ctype, tc.body)
			if code != tc.code {
				t.Fatalf("code %d, want %d: %+v", code, tc.code, r)
			}
			if !strings.Contains(r.Error, tc.errContains) {
				t.Errorf("error %q, want it to contain %q", r.Error, tc.errContains)
			}
			if len(r.Results) != len(tc.lines) {
				t.Fatalf("%d results, want %d: %+v", len(r.Results), len(tc.lines), r.Results)
			}
			acc, rej := 0, 0
			for i, want := range tc.lines {
				got := r.Results[i]
				if got.Line != i+1 || got.Status != want.status || got.Field != want.field || !strings.Contains(got.Reason, want.reason) {
					t.Errorf("line %d: %+v, want %+v", i+1, got, want)
				}
				if got.Status == StatusAccepted {
					acc++
				} else {
					rej++
				}
			}
			if r.Accepted != acc || r.Rejected != rej {
				t.Errorf("accepted %d rejected %d, want %d and %d", r.Accepted, r.Rejected, acc, rej)
			}
			if js, _ := json.Marshal(r); bytes.Contains(js, []byte(secret)) || bytes.Contains(js, []byte("PLANTED")) {
				t.Errorf("the answer echoes a value: %s", js)
			}
		})
	}
	resp, err := http.Get(url + PathEvents)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if n := counterValue(t, reg, "agentrail_gateway_requests_total", "endpoint", PathEvents, "code", "413"); n != 2 {
		t.Errorf("requests_total{code=413} = %v, want 2", n)
	}
}

// counterValue is the counter name{labels} in reg (0 if absent).
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := true
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				match = match && found
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Not ready (Kafka never answered), the in-flight buffer full, and Kafka
// gone after readiness: 503 with Retry-After, never a 2xx.
func TestUnavailable(t *testing.T) {
	t.Run("kafka never answered", func(t *testing.T) {
		_, url, _ := testGateway(t, []string{"127.0.0.1:1"}, nil)
		code, h, r := post(t, url, "application/x-ndjson", signed("billing-bot-1", billingSeed, event(t, "billing-bot", nil)))
		if code != 503 || h.Get("Retry-After") != "1" || !strings.Contains(r.Error, "not ready") {
			t.Errorf("%d Retry-After %q: %+v", code, h.Get("Retry-After"), r)
		}
		resp, err := http.Get(url + PathReadyz)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Errorf("readyz %d", resp.StatusCode)
		}
		if resp, err = http.Get(url + PathHealthz); err != nil || resp.StatusCode != 200 {
			t.Errorf("healthz %v %v", resp, err)
		}
		resp.Body.Close()
	})
	t.Run("in-flight buffer full", func(t *testing.T) {
		_, url, _ := testGateway(t, nil, func(c *Config) { c.MaxBodyBytes, c.MaxLineBytes, c.MaxInFlightBytes = 64<<10, 4<<10, 64<<10 })
		// A request of unknown length holds the whole buffer while its
		// body trickles in.
		pr, pw := io.Pipe()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, url+PathEvents, pr)
			req.Header.Set("Content-Type", "application/x-ndjson")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		if _, err := pw.Write([]byte("{")); err != nil {
			t.Fatal(err)
		}
		var code int
		var h http.Header
		for range 100 { // until the first request holds the buffer
			code, h, _ = post(t, url, "application/x-ndjson", signed("billing-bot-1", billingSeed, event(t, "billing-bot", nil)))
			if code == 503 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if code != 503 || h.Get("Retry-After") == "" {
			t.Errorf("second request: %d, Retry-After %q", code, h.Get("Retry-After"))
		}
		pw.Close()
		wg.Wait()
	})
	t.Run("kafka gone", func(t *testing.T) {
		c, err := broker.Start(broker.Config{Partitions: 1, Topics: []string{"agentrail.events"}})
		if err != nil {
			t.Fatal(err)
		}
		_, url, reg := testGateway(t, c.ListenAddrs(), func(c *Config) { c.ProduceTimeout = time.Second })
		waitReady(t, url)
		c.Close()
		code, h, r := post(t, url, "application/x-ndjson", signed("billing-bot-1", billingSeed, event(t, "billing-bot", nil)))
		if code != 503 || h.Get("Retry-After") == "" || r.Failed != 1 || r.Accepted != 0 || r.Results[0].Status != StatusFailed {
			t.Errorf("%d Retry-After %q: %+v", code, h.Get("Retry-After"), r)
		}
		if n := counterValue(t, reg, "agentrail_gateway_events_total", "outcome", "failed"); n != 1 {
			t.Errorf("events_total{failed} = %v", n)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	var kc kafkacfg.Config
	kc.Defaults()
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"defaults", func(*Config) {}, ""},
		{"tls half", func(c *Config) { c.TLS.CertFile = "x.pem" }, "gateway.tls"},
		{"line over body", func(c *Config) { c.MaxLineBytes = int(c.MaxBodyBytes) + 1 }, "gateway.max_line_bytes"},
		{"lines", func(c *Config) { c.MaxLines = -1 }, "gateway.max_lines"},
		{"in flight", func(c *Config) { c.MaxInFlightBytes = c.MaxBodyBytes - 1 }, "gateway.max_in_flight_bytes"},
		{"kafka", func(c *Config) { c.Kafka.Brokers = []string{"nohost"} }, "gateway.kafka"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			c.Defaults()
			tc.mutate(&c)
			err := c.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// With tls set the gateway serves HTTPS only: a client trusting its
// certificate posts; plain HTTP is refused.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	kafka, err := broker.Start(broker.Config{Partitions: 1, Topics: []string{"agentrail.events"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	g, _, _ := testGateway(t, kafka.ListenAddrs(), func(c *Config) { c.TLS = TLSConfig{CertFile: certFile, KeyFile: keyFile} })
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	url := "https://" + g.Addr().String()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(url + PathReadyz)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready over TLS: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := client.Post(url+PathEvents, "application/x-ndjson", bytes.NewReader(signed("billing-bot-1", billingSeed, event(t, "billing-bot", nil))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HTTPS post: %d", resp.StatusCode)
	}
	if resp, err := http.Get("http://" + g.Addr().String() + PathHealthz); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200")
		}
	}
	var bad Config
	bad.Listen, bad.RegistryFile = "127.0.0.1:0", writeRegistry(t)
	bad.TLS = TLSConfig{CertFile: keyFile, KeyFile: certFile}
	bad.Defaults()
	if _, err := New(context.Background(), bad, prometheus.NewRegistry(), quiet); err == nil || !strings.Contains(err.Error(), "gateway: tls") {
		t.Errorf("New with swapped cert and key: %v", err)
	}
}
