// Package gateway is an HTTP service in front of Kafka for agents that do
// not speak Kafka. POST /v1/events takes NDJSON, one signed JSON event a
// line (package ndjson, signing/doc.go): each line is checked early, as
// ingest will check it (the key is registered, the signature verifies over
// the event's exact bytes, the event decodes and validates, the key is the
// event's agent's), then the exact bytes are produced to the events topic
// with the signature headers, keyed by trace_id, idempotently with
// acks=all, and the request is answered only after Kafka acknowledged
// every accepted line (docs/GATEWAY.md has the status codes).
//
// Memory is bounded: the bodies in flight share MaxInFlightBytes, and a
// request that does not fit is answered 503 with Retry-After at once.
//
// Metrics:
//
//	agentrail_gateway_requests_total{endpoint,code}   requests answered
//	agentrail_gateway_events_total{outcome}           lines: accepted, rejected, failed (Kafka did not acknowledge)
//	agentrail_gateway_request_seconds{endpoint}       time to answer
//	agentrail_gateway_in_flight_requests              requests being served
//	agentrail_gateway_in_flight_bytes                 bytes of bodies held
//	agentrail_gateway_ready                           1 once Kafka answered, 0 while draining
//
// It deliberately does not: sign or alter an event (it cannot: the agent
// signed the bytes), store anything (ingest does, and verifies again),
// authenticate senders other than by their events' signatures, reload the
// registry while running, or touch signals (cmd/agentrail does).
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/semaphore"

	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// Paths served.
const (
	PathEvents  = "/v1/events"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
)

// Gateway is the HTTP service. Its lifecycle is New, Run, Close.
type Gateway struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	srv    *http.Server
	cl     *kgo.Client
	ver    *signing.Verifier
	dec    *schemas.Decoder
	lim    schemas.Limits
	sem    *semaphore.Weighted
	m      metrics
	ready  atomic.Bool
	closed atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

type metrics struct {
	requests      *prometheus.CounterVec
	events        *prometheus.CounterVec
	seconds       *prometheus.HistogramVec
	inFlight      prometheus.Gauge
	inFlightBytes prometheus.Gauge
	ready         prometheus.Gauge
}

// New checks cfg, reads the registry's keys, opens the Kafka client and
// listens on cfg.Listen; it serves once Run is called.
func New(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	ver, err := signing.LoadRegistry(cfg.RegistryFile, cfg.ClockSkew)
	if err != nil {
		return nil, fmt.Errorf("gateway: load registry keys: %w", err)
	}
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	opts, err := cfg.Kafka.Opts()
	if err != nil {
		return nil, fmt.Errorf("gateway: kafka options: %w", err)
	}
	opts = append(opts,
		kgo.DefaultProduceTopic(cfg.Kafka.Topics.Events),
		kgo.RequiredAcks(kgo.AllISRAcks()), // and idempotent: franz-go's default
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.WithLogger(kafkacfg.Logger(log, kgo.LogLevelWarn)),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("gateway: kafka client: %w", err)
	}
	var tc *tls.Config
	if cfg.TLS.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			cl.Close()
			return nil, fmt.Errorf("gateway: tls: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("gateway: listen on %s: %w", cfg.Listen, err)
	}
	g := &Gateway{cfg: cfg, log: log, ln: ln, cl: cl, ver: ver, dec: dec,
		lim: schemas.Limits{MaxFuture: cfg.MaxFuture, MaxPast: cfg.MaxPast, MaxString: schemas.DefaultLimits.MaxString},
		sem: semaphore.NewWeighted(cfg.MaxInFlightBytes), m: newMetrics()}
	for _, c := range []prometheus.Collector{g.m.requests, g.m.events, g.m.seconds, g.m.inFlight, g.m.inFlightBytes, g.m.ready} {
		if err := reg.Register(c); err != nil {
			cl.Close()
			ln.Close()
			return nil, fmt.Errorf("gateway: register metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc(PathEvents, g.instrument(PathEvents, g.handleEvents))
	mux.HandleFunc(PathHealthz, g.instrument(PathHealthz, func(w http.ResponseWriter, _ *http.Request) int {
		return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	mux.HandleFunc(PathReadyz, g.instrument(PathReadyz, func(w http.ResponseWriter, _ *http.Request) int {
		if !g.ready.Load() {
			return writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not ready: Kafka has not answered yet, or the gateway is draining"})
		}
		return writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}))
	mux.HandleFunc("/", g.instrument("other", func(w http.ResponseWriter, _ *http.Request) int {
		return writeJSON(w, http.StatusNotFound, errorBody{Error: "no such endpoint: POST " + PathEvents + ", GET " + PathHealthz + " or " + PathReadyz})
	}))
	g.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	keys, agents := ver.Keys()
	log.Info("gateway listening", "addr", ln.Addr().String(), "tls", cfg.TLS.CertFile != "", "keys", keys, "agents", agents)
	return g, nil
}

func newMetrics() metrics {
	return metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentrail_gateway_requests_total", Help: "HTTP requests answered, by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentrail_gateway_events_total", Help: "NDJSON lines by outcome: accepted (Kafka acknowledged), rejected (bad line), failed (Kafka did not acknowledge).",
		}, []string{"outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentrail_gateway_request_seconds", Help: "Time to answer a request, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"endpoint"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentrail_gateway_in_flight_requests", Help: "Requests being served.",
		}),
		inFlightBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentrail_gateway_in_flight_bytes", Help: "Bytes of request bodies held (bounded by max_in_flight_bytes).",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentrail_gateway_ready", Help: "1 once Kafka answered, 0 before and while draining.",
		}),
	}
}

// Addr is the address the gateway listens on.
func (g *Gateway) Addr() net.Addr { return g.ln.Addr() }

// Run serves until ctx ends, then drains within DrainTimeout (Close). It
// becomes ready once Kafka answers.
func (g *Gateway) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() {
		var err error
		if g.cfg.TLS.CertFile != "" {
			err = g.srv.ServeTLS(g.ln, "", "") // the pair loaded in New
		} else {
			err = g.srv.Serve(g.ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		served <- err
	}()
	go g.waitReady(ctx)
	select {
	case err := <-served:
		if err != nil {
			_ = g.Close(context.Background())
			return fmt.Errorf("gateway: serve: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), g.cfg.DrainTimeout)
	defer cancel()
	return g.Close(dctx)
}

// waitReady pings Kafka until it answers.
func (g *Gateway) waitReady(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := g.cl.Ping(pctx)
		cancel()
		if err == nil {
			if !g.closed.Load() {
				g.ready.Store(true)
				g.m.ready.Set(1)
				g.log.Info("gateway ready: Kafka answered")
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close stops accepting connections, lets the requests in flight finish
// (each waits for its Kafka acknowledgement) until ctx ends, then closes
// the Kafka client. It is idempotent.
func (g *Gateway) Close(ctx context.Context) error {
	g.closeOnce.Do(func() {
		g.closed.Store(true)
		g.ready.Store(false)
		g.m.ready.Set(0)
		if err := g.srv.Shutdown(ctx); err != nil {
			// The budget ended with requests in flight: their clients get
			// no answer (so no 2xx), which is safe to retry.
			g.closeErr = fmt.Errorf("gateway: drain: %w", err)
			_ = g.srv.Close()
		}
		g.cl.Close()
		g.log.Info("gateway closed")
	})
	return g.closeErr
}

// instrument counts and times a handler, which returns the status it wrote.
func (g *Gateway) instrument(endpoint string, h func(http.ResponseWriter, *http.Request) int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		g.m.inFlight.Inc()
		code := h(w, r)
		g.m.inFlight.Dec()
		g.m.requests.WithLabelValues(endpoint, fmt.Sprint(code)).Inc()
		g.m.seconds.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	}
}
