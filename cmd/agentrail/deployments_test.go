package main

// The files under deployments/ that the code does not read itself (the
// Prometheus rules, the Grafana dashboard, the compose deployment, the
// ClickHouse cluster DDL) are checked here against the code: the metric and
// label names the real services register, the config loader `agentrail
// ingest --config` uses, and the real ClickHouse server (migrated schema,
// formatQuery). These tests live in package main because that is where the
// services are wired and the config is loaded.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"text/template"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/pipeline"
	"github.com/agentrail/agentrail/producers"
)

const deploymentsDir = "../../deployments"

// metricFamily is what one registered metric name allows in a query.
type metricFamily struct {
	labels   map[string]bool
	observer bool // a histogram or summary: _bucket/_sum/_count series
	service  string
}

// recordingRegisterer registers on a real registry (so duplicates fail as
// in production) and records every descriptor's name and labels.
type recordingRegisterer struct {
	service string
	reg     *prometheus.Registry
	fams    map[string]*metricFamily
	err     error
}

var (
	descName   = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)
)

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return err
	}
	_, observer := c.(interface{ Observe(float64) })
	switch c.(type) {
	case *prometheus.HistogramVec, *prometheus.SummaryVec:
		observer = true
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		s := d.String()
		n, l := descName.FindStringSubmatch(s), descLabels.FindStringSubmatch(s)
		if n == nil || l == nil {
			r.err = fmt.Errorf("cannot read descriptor %s (client_golang changed Desc.String?)", s)
			continue
		}
		f := &metricFamily{labels: map[string]bool{}, observer: observer, service: r.service}
		for _, kv := range strings.Split(l[1], ",") {
			if k, _, ok := strings.Cut(kv, "="); ok {
				f.labels[k] = true
			}
		}
		for _, v := range strings.Split(l[2], ",") {
			if v = strings.TrimSuffix(strings.TrimPrefix(v, "c("), ")"); v != "" {
				f.labels[v] = true
			}
		}
		r.fams[n[1]] = f
	}
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recordingRegisterer) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

// registeredMetrics builds each serving command's services the way the
// command does (newIngest, newReportsService, registerRuntimeMetrics +
// openLedger) and the producer SDK, against the real broker and
// ClickHouse, and returns every metric name they register.
func registeredMetrics(t *testing.T) map[string]*metricFamily {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg, err := pipeline.Parse(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Brokers = []string{testenv.Broker(t, cfg.Kafka.Topics.Events, cfg.Kafka.Topics.DeadLetter, cfg.Kafka.Topics.Ledger)}
	chCfg, conn := testenv.ClickHouse(t)
	cfg.ClickHouse = chCfg
	cfg.Signatures.RegistryFile = filepath.Join(deploymentsDir, "registry.yaml")
	cfg.Signatures.DisableWatch = true
	cfg.Anomaly.DisableWatch = true
	cfg.Reports.SMTP.Host = "smtp.invalid" // never dialled: nothing is sent
	keyFile := filepath.Join(t.TempDir(), "ledger.pem")
	if err := ledgerKeygen(keyFile, io.Discard); err != nil {
		t.Fatal(err)
	}
	cfg.Ledger.Enabled, cfg.Ledger.PrivateKeyFile = true, keyFile
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	all := map[string]*metricFamily{}
	record := func(service string, build func(reg prometheus.Registerer) error) {
		rec := &recordingRegisterer{service: service, reg: prometheus.NewRegistry(), fams: map[string]*metricFamily{}}
		if err := build(rec); err != nil {
			t.Fatalf("%s: %v", service, err)
		}
		if rec.err != nil {
			t.Fatal(rec.err)
		}
		if len(rec.fams) == 0 {
			t.Fatalf("%s registered no metrics", service)
		}
		for n, f := range rec.fams {
			if g, ok := all[n]; ok { // the same metric from two services: allow the union of labels
				for l := range f.labels {
					g.labels[l] = true
				}
				continue
			}
			all[n] = f
		}
	}
	record("ingest", func(reg prometheus.Registerer) error {
		in, err := newIngest(ctx, cfg, reg, log)
		if err == nil {
			t.Cleanup(func() { in.Close(context.Background()) })
		}
		return err
	})
	record("reports", func(reg prometheus.Registerer) error {
		svc, closeLedger, err := newReportsService(cfg, conn, reg, log, true)
		if err == nil {
			t.Cleanup(func() { svc.Close(context.Background()); closeLedger() })
		}
		return err
	})
	record("ledger", func(reg prometheus.Registerer) error {
		if err := registerRuntimeMetrics(reg); err != nil {
			return err
		}
		led, err := openLedger(cfg, conn, reg, log)
		if err == nil {
			t.Cleanup(func() { led.Close(context.Background()) })
		}
		return err
	})
	record("producer", func(reg prometheus.Registerer) error {
		em, err := producers.New(producers.Config{Kafka: cfg.Kafka}, reg, log)
		if err == nil {
			t.Cleanup(func() { em.Close(context.Background()) })
		}
		return err
	})
	return all
}

// Series Prometheus itself adds to every target.
var prometheusSeries = map[string]bool{"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true}

// checkSelectors names every selector whose metric or label no service
// registers.
func checkSelectors(fams map[string]*metricFamily, sels []pqSelector) []string {
	var bad []string
	for _, s := range sels {
		if s.Name == "" {
			bad = append(bad, "a selector without a metric name")
			continue
		}
		if prometheusSeries[s.Name] {
			continue
		}
		f, ok := fams[s.Name]
		labels := map[string]bool{}
		if !ok {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if g, found := fams[strings.TrimSuffix(s.Name, suf)]; found && strings.HasSuffix(s.Name, suf) && g.observer {
					f, ok = g, true
					if suf == "_bucket" {
						labels["le"] = true
					}
				}
			}
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("metric %s is registered by no agentrail service", s.Name))
			continue
		}
		for _, l := range s.Labels {
			if !f.labels[l] && !labels[l] && l != "job" && l != "instance" {
				bad = append(bad, fmt.Sprintf("metric %s has no label %q (it has %v)", s.Name, l, keys(f.labels)))
			}
		}
	}
	return bad
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ruleFile is the Prometheus rule file format, decoded strictly.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var promDuration = regexp.MustCompile(`^(0|([0-9]+(ms|s|m|h|d|w|y))+)$`)

// promTemplate parses an annotation as Prometheus does (Go text/template
// with Prometheus's functions) and renders it with labels.
func promTemplate(text string, labels map[string]string) (string, error) {
	str := func(v any) string { return fmt.Sprint(v) }
	funcs := template.FuncMap{
		"humanize": str, "humanize1024": str, "humanizeDuration": str, "humanizePercentage": str,
		"humanizeTimestamp": str, "toUpper": strings.ToUpper, "toLower": strings.ToLower, "title": str,
		"first": str, "value": str, "label": str, "query": str, "reReplaceAll": str, "match": str,
	}
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).
		Parse("{{$labels := .Labels}}{{$value := .Value}}" + text)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	err = tmpl.Execute(&b, map[string]any{"Labels": labels, "Value": 1.5})
	return b.String(), err
}

// runQuery runs a documented query against db on the real server: it must
// parse and name only tables and columns the migrations create.
func runQuery(ctx context.Context, conn driver.Conn, db, q string) error {
	q = strings.ReplaceAll(q, "agentrail.", db+".")
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

func TestDeploymentsAlertRules(t *testing.T) {
	fams := registeredMetrics(t)
	chCfg, conn := testenv.ClickHouse(t)
	db := chCfg.Database
	raw, err := os.ReadFile(filepath.Join(deploymentsDir, "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	names, n := map[string]bool{}, 0
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			n++
			t.Run(r.Alert, func(t *testing.T) {
				if r.Alert == "" || r.Record != "" {
					t.Fatalf("group %s: every rule must be an alert (alert: set, record: not)", g.Name)
				}
				if names[r.Alert] {
					t.Errorf("alert %s defined twice", r.Alert)
				}
				names[r.Alert] = true
				if !promDuration.MatchString(r.For) {
					t.Errorf("for: %q is not a Prometheus duration (write 0m for none)", r.For)
				}
				if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
					t.Errorf("labels.severity %q: want critical, warning or info", s)
				}
				for _, a := range []string{"summary", "description"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						t.Errorf("annotations.%s is empty", a)
					}
				}
				for k, v := range r.Annotations {
					if k != "summary" && k != "description" && k != "query" {
						t.Errorf("annotation %q: only summary, description and query are used", k)
					}
					if _, err := promTemplate(v, map[string]string{"rule": "retry_burst", "instance": "ingest:9464"}); err != nil {
						t.Errorf("annotations.%s: template: %v", k, err)
					}
				}
				typ, sels, err := parsePromQL(r.Expr)
				if err != nil {
					t.Fatalf("expr: %v\n%s", err, r.Expr)
				}
				if typ != pqVector {
					t.Errorf("expr is a %s; an alert needs an instant vector", typ)
				}
				for _, b := range checkSelectors(fams, sels) {
					t.Errorf("expr: %s", b)
				}
				if q := r.Annotations["query"]; q != "" {
					q, _ = promTemplate(q, map[string]string{"rule": "retry_burst"})
					if err := runQuery(context.Background(), conn, db, q); err != nil {
						t.Errorf("annotations.query does not run on the migrated schema: %v\n%s", err, q)
					}
				}
			})
		}
	}
	if n < 10 {
		t.Errorf("alerts.yaml has %d rules; expected the full set", n)
	}
}

// grafanaPanel is the part of a Grafana panel the test reads.
type grafanaPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource map[string]any `json:"datasource"`
	GridPos    *struct{ H, W, X, Y int }
	Panels     []grafanaPanel `json:"panels"`
	Targets    []struct {
		RefID      string         `json:"refId"`
		Datasource map[string]any `json:"datasource"`
		Expr       string         `json:"expr"`
		RawSQL     string         `json:"rawSql"`
	} `json:"targets"`
}

// grafanaPromQL replaces Grafana's interval variables by durations; other
// variables appear only inside label matcher strings.
func grafanaPromQL(expr string) string {
	return strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h").Replace(expr)
}

var (
	chTimeFilter   = regexp.MustCompile(`\$__timeFilter\(([a-z_]+)\)`)
	chTimeInterval = regexp.MustCompile(`\$__timeInterval\(([a-z_]+)\)`)
)

// grafanaSQL expands the ClickHouse datasource's macros the dashboard uses.
func grafanaSQL(q string) string {
	q = chTimeFilter.ReplaceAllString(q, "$1 >= now() - INTERVAL 6 HOUR AND $1 <= now()")
	return chTimeInterval.ReplaceAllString(q, "toStartOfMinute($1)")
}

func TestDeploymentsDashboard(t *testing.T) {
	fams := registeredMetrics(t)
	chCfg, conn := testenv.ClickHouse(t)
	db := chCfg.Database
	raw, err := os.ReadFile(filepath.Join(deploymentsDir, "grafana", "agentrail.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string         `json:"uid"`
		Title      string         `json:"title"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("agentrail.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Error("the dashboard needs a uid and a title (provisioning keys on the uid)")
	}
	vars := map[string]string{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = v.Type
		if q, ok := v.Query.(map[string]any); ok && v.Type == "query" {
			lv := regexp.MustCompile(`^label_values\((.+), *([a-z_]+)\)$`).FindStringSubmatch(fmt.Sprint(q["query"]))
			if lv == nil {
				t.Errorf("variable %s: query %v is not label_values(selector, label)", v.Name, q["query"])
				continue
			}
			if _, sels, err := parsePromQL(lv[1]); err != nil {
				t.Errorf("variable %s: %v", v.Name, err)
			} else {
				for _, b := range checkSelectors(fams, sels) {
					t.Errorf("variable %s: %s", v.Name, b)
				}
			}
		}
	}
	if vars["datasource"] != "datasource" {
		t.Error(`the dashboard needs a "datasource" variable of type datasource, so it imports on any Prometheus`)
	}
	ids := map[int]bool{}
	var exprs, sqls int
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] || p.GridPos == nil {
				t.Errorf("panel %q: id %d repeated or no gridPos", p.Title, p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no queries", p.Title)
			}
			for _, tg := range p.Targets {
				ds := tg.Datasource
				if ds == nil {
					ds = p.Datasource
				}
				uid := fmt.Sprint(ds["uid"])
				switch ds["type"] {
				case "prometheus":
					if uid != "${datasource}" {
						t.Errorf("panel %q %s: datasource uid %q, want ${datasource}", p.Title, tg.RefID, uid)
					}
					exprs++
					_, sels, err := parsePromQL(grafanaPromQL(tg.Expr))
					if err != nil {
						t.Errorf("panel %q %s: %v\n%s", p.Title, tg.RefID, err, tg.Expr)
						continue
					}
					for _, b := range checkSelectors(fams, sels) {
						t.Errorf("panel %q %s: %s", p.Title, tg.RefID, b)
					}
				case "grafana-clickhouse-datasource":
					if uid != "${clickhouse}" || vars["clickhouse"] != "datasource" {
						t.Errorf("panel %q %s: ClickHouse datasource uid %q, want the ${clickhouse} variable", p.Title, tg.RefID, uid)
					}
					sqls++
					if err := runQuery(context.Background(), conn, db, grafanaSQL(tg.RawSQL)); err != nil {
						t.Errorf("panel %q %s: SQL does not run on the migrated schema: %v\n%s", p.Title, tg.RefID, err, tg.RawSQL)
					}
				default:
					t.Errorf("panel %q %s: unknown datasource type %v", p.Title, tg.RefID, ds["type"])
				}
			}
		}
	}
	walk(dash.Panels)
	if exprs < 20 {
		t.Errorf("%d PromQL queries checked; expected the full dashboard", exprs)
	}
	t.Logf("%d panels, %d PromQL queries, %d ClickHouse queries checked", len(ids), exprs, sqls)
}

func TestPromQLParser(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want pqType
		err  string // "" = valid
	}{
		{`up{job="agentrail-ingest"} == 0`, pqVector, ""},
		{`sum by (stage) (rate(x_total{a=~"b|c"}[5m])) > 0.1`, pqVector, ""},
		{`sum(rate(x[5m])) by (le)`, pqVector, ""},
		{`histogram_quantile(0.99, sum by (instance, le) (rate(h_bucket[10m])))`, pqVector, ""},
		{`time() - (a > b or c{job="j"}) > 900`, pqVector, ""},
		{`(time() - max(a) > 300) and on() (sum(rate(b[5m])) > 0)`, pqVector, ""},
		{`a / on(instance) group_left(team) b`, pqVector, ""},
		{`max_over_time(rate(x[1m])[1h:5m])`, pqVector, ""},
		{`x offset 5m`, pqVector, ""},
		{`2 * 86400`, pqScalar, ""},
		{`-x ^ 2`, pqVector, ""},
		{`rate(x)`, 0, "argument 1 is a instant vector, want a range vector"},
		{`rate(x[5m]`, 0, "expected"},
		{`sum(x[5m])`, 0, "range vector"},
		{`x{a="b"`, 0, "expected"},
		{`x[5]`, 0, "expected dur"},
		{`(x + y)[5m]`, 0, "not a selector"},
		{`nosuchfunc(x)`, 0, "unknown function"},
		{`1 > 2`, 0, "needs bool"},
		{`x and 1`, 0, "two instant vectors"},
		{`x{a=~"("}`, 0, "bad regexp"},
		{`{a=""}`, 0, "non-empty matcher"},
		{`x{a="b"} y`, 0, "unexpected"},
		{`histogram_quantile(x, y)`, 0, "argument 1"},
		{`x > bool y or`, 0, "unexpected end"},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			got, _, err := parsePromQL(tc.expr)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("want an error containing %q, got %v", tc.err, err)
			case tc.err == "" && got != tc.want:
				t.Fatalf("type %s, want %s", got, tc.want)
			}
		})
	}
	_, sels, err := parsePromQL(`sum(rate(a_total{x="1", __name__="ignored"}[5m])) / b{y!~"2"}`)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sels) != "[{ignored [x]} {b [y]}]" {
		t.Errorf("selectors %v", sels)
	}
}

// composeFile is the part of docker-compose.yaml the test reads.
type composeFile struct {
	Services map[string]struct {
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Image       string   `yaml:"image"`
		Command     []string `yaml:"command"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		Volumes []string `yaml:"volumes"`
		Secrets []string `yaml:"secrets"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

func TestDeploymentsCompose(t *testing.T) {
	dir := filepath.Join(deploymentsDir, "compose")
	raw, err := os.ReadFile(filepath.Join(dir, "docker-compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	for _, want := range []string{"kafka", "clickhouse", "migrate", "ingest", "reports", "ledger", "prometheus", "grafana"} {
		if _, ok := cf.Services[want]; !ok {
			t.Errorf("service %s missing", want)
		}
	}
	initScript, err := os.ReadFile(filepath.Join(dir, "init-secrets.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range cf.Secrets {
		if !strings.HasPrefix(s.File, "./secrets/") || !bytes.Contains(initScript, []byte(filepath.Base(s.File))) {
			t.Errorf("secret %s: file %q is not one init-secrets.sh makes under ./secrets/", name, s.File)
		}
	}
	exists := func(what, p string) {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	// Prometheus targets, service:port, as prometheus.yaml lists them.
	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	promRaw, err := os.ReadFile(filepath.Join(deploymentsDir, "prometheus", "prometheus.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(promRaw, &prom); err != nil {
		t.Fatalf("prometheus.yaml: %v", err)
	}
	targets := map[string]string{}
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = sc.JobName
			}
		}
	}
	configs := 0
	for name, svc := range cf.Services {
		t.Run(name, func(t *testing.T) {
			if svc.Build != nil {
				exists("build context", svc.Build.Context)
				exists("dockerfile", filepath.Join(svc.Build.Context, svc.Build.Dockerfile))
			}
			mounts := map[string]string{} // container path -> path relative to dir
			for _, v := range svc.Volumes {
				parts := strings.Split(v, ":")
				if len(parts) < 2 {
					t.Errorf("volume %q: want source:target", v)
					continue
				}
				if strings.HasPrefix(parts[0], ".") {
					exists("volume "+v, parts[0])
					mounts[parts[1]] = parts[0]
				} else if _, named := cf.Volumes[parts[0]]; !named {
					t.Errorf("volume %q: neither a repository file nor a named volume", v)
				}
			}
			for _, s := range svc.Secrets {
				if _, ok := cf.Secrets[s]; !ok {
					t.Errorf("secret %s is not defined at the top level", s)
				}
				mounts["/run/secrets/"+s] = ""
			}
			if name == "prometheus" {
				for _, rf := range prom.RuleFiles {
					if mounts[rf] == "" {
						t.Errorf("prometheus.yaml rule file %s is not mounted in the prometheus service", rf)
					}
				}
			}
			cmd := svc.Command
			for i, a := range cmd {
				switch {
				case a == "--metrics" && i+1 < len(cmd):
					_, port, _ := strings.Cut(cmd[i+1], ":")
					// A service's healthcheck probes its own /readyz.
					if hc := svc.Healthcheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/usr/local/bin/agentrail", "probe", "http://127.0.0.1:" + port + "/readyz"}) {
						t.Errorf("--metrics %s: no healthcheck probing http://127.0.0.1:%s/readyz", cmd[i+1], port)
					}
					if !strings.HasPrefix(cmd[i+1], "0.0.0.0:") {
						t.Errorf("--metrics %s: Prometheus cannot reach a loopback address in another container", cmd[i+1])
					}
					if _, ok := targets[name+":"+port]; !ok {
						t.Errorf("--metrics %s: prometheus.yaml has no target %s:%s", cmd[i+1], name, port)
					}
				case a == "--config" && i+1 < len(cmd):
					host, ok := mounts[cmd[i+1]]
					if !ok || host == "" {
						t.Fatalf("--config %s is not a mounted file", cmd[i+1])
					}
					configs++
					// The loader and validation `agentrail ingest --config` runs.
					cfl := connFlags{Config: filepath.Join(dir, host)}
					cfg, err := cfl.load()
					if err != nil {
						t.Fatalf("--config %s (%s): %v", cmd[i+1], host, err)
					}
					for field, p := range map[string]string{
						"signatures.registry_file": cfg.Signatures.RegistryFile, "anomaly.rules_file": cfg.Anomaly.RulesFile,
						"ledger.private_key_file": cfg.Ledger.PrivateKeyFile, "redaction.secret_file": cfg.Redaction.SecretFile,
						"clickhouse.password_file": cfg.ClickHouse.PasswordFile, "reports.smtp.password_file": cfg.Reports.SMTP.PasswordFile,
					} {
						if _, mounted := mounts[p]; p != "" && !mounted {
							t.Errorf("%s: %s %s is not mounted in service %s", host, field, p, name)
						}
					}
					if cfg.Signatures.Mode != "off" && cfg.Signatures.RegistryFile == "" && cmd[0] == "ingest" {
						t.Errorf("%s: ingest verifies signatures but names no registry_file", host)
					}
				}
			}
		})
	}
	for tg, job := range targets {
		svc, _, _ := strings.Cut(tg, ":")
		if _, ok := cf.Services[svc]; !ok {
			t.Errorf("prometheus.yaml job %s targets %s, not a compose service", job, tg)
		}
	}
	if configs < 4 {
		t.Errorf("%d agentrail configs checked; expected migrate, ingest, ledger and reports", configs)
	}
}

// TestClusterSchema checks deployments/clickhouse/cluster/schema.sql on the
// real server: every statement parses (formatQuery needs no Keeper), and
// each local table, created without replication in a scratch database, has
// the columns the migrations give the single-server table of its name.
func TestClusterSchema(t *testing.T) {
	chCfg, conn := testenv.ClickHouse(t)
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join(deploymentsDir, "clickhouse", "cluster", "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			text.WriteString(line + "\n")
		}
	}
	scratch := chCfg.Database + "_cluster"
	if err := conn.Exec(ctx, "CREATE DATABASE "+scratch); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+scratch+" SYNC") })
	replicated := regexp.MustCompile(`ReplicatedReplacingMergeTree\('[^']*', '[^']*'(, )?`)
	localTable := regexp.MustCompile(`^CREATE TABLE IF NOT EXISTS agentrail_local\.([a-z_]+) ON CLUSTER agentrail`)
	columns := func(db, table string) []string {
		rows, err := conn.Query(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = ? ORDER BY name", db, table)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var cs []string
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		return cs
	}
	stmts, locals := 0, 0
	for _, stmt := range strings.Split(text.String(), ";") {
		stmt = strings.TrimSpace(stmt)
		if stmt == "" {
			continue
		}
		stmts++
		var formatted string
		if err := conn.QueryRow(ctx, "SELECT formatQuery(?)", stmt).Scan(&formatted); err != nil {
			t.Errorf("does not parse: %v\n%s", err, stmt)
			continue
		}
		m := localTable.FindStringSubmatch(stmt)
		if m == nil {
			continue
		}
		locals++
		single := strings.Replace(stmt, " ON CLUSTER agentrail", "", 1)
		single = strings.Replace(single, "agentrail_local.", scratch+".", 1)
		single = replicated.ReplaceAllString(single, "ReplacingMergeTree(")
		if err := conn.Exec(ctx, single); err != nil {
			t.Errorf("%s: the local table, without replication, is not created: %v\n%s", m[1], err, single)
			continue
		}
		got, want := columns(scratch, m[1]), columns(chCfg.Database, m[1])
		if strings.Join(got, ",") != strings.Join(want, ",") || len(want) == 0 {
			t.Errorf("%s: columns\n%v\nbut the migrations create\n%v", m[1], got, want)
		}
	}
	if stmts < 7 || locals < 2 {
		t.Errorf("%d statements, %d local tables checked", stmts, locals)
	}
}
