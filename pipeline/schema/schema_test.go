package schema

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite deployments/schema/ from the Go types")

const deployments = "../../deployments"

// The checked-in schemas are what the Go types generate.
func TestSchemas(t *testing.T) {
	for _, f := range Files {
		t.Run(f.Name, func(t *testing.T) {
			got, err := Generate(f)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(deployments, "schema", f.Name)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs from what the Go types generate: run go generate ./pipeline/schema", path)
			}
		})
	}
}

// The shipped files validate against their schemas, and name them on
// their first line for editors.
func TestShippedFilesValidate(t *testing.T) {
	for _, f := range Files {
		t.Run(f.Shipped, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(deployments, f.Shipped))
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(raw), "\n")
			// ../deployments/schema/ resolves from deployments/ and from
			// anomaly/, where the built-in copy of rules.yaml lives.
			if want := "# yaml-language-server: $schema=../deployments/schema/" + f.Name; first != want {
				t.Errorf("first line %q, want %q", first, want)
			}
			if err := validate(t, f, raw); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The compose deployment's configs validate against the pipeline schema
// and name it.
func TestComposeConfigsValidate(t *testing.T) {
	for _, name := range []string{"compose/agentrail.yaml", "compose/reports.yaml"} {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(deployments, name))
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(raw), "\n")
			if want := "# yaml-language-server: $schema=../schema/agentrail.schema.json"; first != want {
				t.Errorf("first line %q, want %q", first, want)
			}
			if err := validate(t, Files[0], raw); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The schemas refuse what the decoders refuse: unknown keys, a mistyped
// value, a duration outside the grammar, and accept the grammar.
func TestSchemasRefuse(t *testing.T) {
	cases := []struct {
		file, yaml string
		ok         bool
	}{
		{"agentrail.schema.json", "ingest:\n  batch_interval: 250ms\n", true},
		{"agentrail.schema.json", "correlation:\n  abandon_after: 1d\nkafka:\n  topics:\n    alerts: a\n", true},
		{"agentrail.schema.json", "reports:\n  retention:\n    tier1: 6mo\n    tier2: 1y6mo\n", true},
		{"agentrail.schema.json", "reports:\n  retention:\n    tier1: 6m\n", true}, // old spelling: warned, still valid
		{"agentrail.schema.json", "kafka:\n  brokerz: [x]\n", false},
		{"agentrail.schema.json", "ingest:\n  batch_rows: many\n", false},
		{"agentrail.schema.json", "ingest:\n  batch_interval: soon\n", false},
		{"agentrail.schema.json", "reports:\n  catch_up: 1mo\n", false},
		{"agentrail.schema.json", "reports:\n  retention:\n    tier1: 720h\n", false},
		{"rules.schema.json", "version: 1\nallowed_lateness: 2w\n", true},
		{"rules.schema.json", "version: 1\nrules:\n  - {name: x, windw: {size: 1h}}\n", false},
		{"registry.schema.json", "teams:\n  - {name: a, timezone: UTC}\n", true},
		{"registry.schema.json", "teams:\n  - {name: a, tz: UTC}\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.file+" "+strings.ReplaceAll(tc.yaml, "\n", " "), func(t *testing.T) {
			var f File
			for _, x := range Files {
				if x.Name == tc.file {
					f = x
				}
			}
			err := validate(t, f, []byte(tc.yaml))
			if tc.ok != (err == nil) {
				t.Fatalf("valid = %v (%v), want %v", err == nil, err, tc.ok)
			}
		})
	}
}

// validate checks raw against f's checked-in schema.
func validate(t *testing.T, f File, raw []byte) error {
	t.Helper()
	sch, err := os.ReadFile(filepath.Join(deployments, "schema", f.Name))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(sch))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(f.Name, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(f.Name)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return s.Validate(jsonValue(v))
}

// jsonValue turns a decoded YAML value into what encoding/json would give:
// timestamps (unquoted dates) are strings, numbers float64 or int.
func jsonValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonValue(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = jsonValue(e)
		}
		return v
	case time.Time:
		return v.Format(time.RFC3339)
	case int:
		return json.Number(fmt.Sprint(v))
	case uint64:
		return json.Number(fmt.Sprint(v))
	case float64:
		return json.Number(fmt.Sprint(v))
	}
	return v
}
