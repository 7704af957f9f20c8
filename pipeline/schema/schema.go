// Package schema generates the JSON Schemas of agentrail's YAML files from
// the Go types that decode them: agentrail.yaml (pipeline.Config),
// rules.yaml (anomaly.RuleSet) and registry.yaml (registry.Registry). The
// schemas are checked in under deployments/schema/, where editors find
// them through each file's `# yaml-language-server: $schema=` line; the
// package's test fails when they differ from what the types generate and
// validates the shipped files against them. Refresh them with
//
//	go generate ./pipeline/schema
//
// It deliberately does not validate values: ranges, cross-field rules and
// the meaning of durations are the Validate methods' and the decoders' job.
// A schema only knows each file's keys and their types, and the duration
// grammar's pattern.
package schema

//go:generate go test . -run TestSchemas -update

import (
	"bytes"
	"encoding/json"
	"path"
	"reflect"
	"time"

	"github.com/invopop/jsonschema"

	"github.com/agentrail/agentrail/anomaly"
	"github.com/agentrail/agentrail/internal/duration"
	"github.com/agentrail/agentrail/pipeline"
	"github.com/agentrail/agentrail/reports/registry"
	"github.com/agentrail/agentrail/reports/retention"
)

// File is one YAML file and its schema.
type File struct {
	Name    string // the schema's file name under deployments/schema/
	Shipped string // the example file under deployments/ it describes
	Title   string
	typ     reflect.Type
}

// Files are the schemas agentrail ships.
var Files = []File{
	{"agentrail.schema.json", "agentrail.yaml", "agentrail pipeline config", reflect.TypeFor[pipeline.Config]()},
	{"rules.schema.json", "rules.yaml", "agentrail anomaly rules", reflect.TypeFor[anomaly.RuleSet]()},
	{"registry.schema.json", "registry.yaml", "agentrail agent registry", reflect.TypeFor[registry.Registry]()},
}

// Generate returns f's schema, indented, with a final newline.
func Generate(f File) ([]byte, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true, // every key is optional: defaults fill it
		Anonymous:                  true,
		Mapper:                     mapper,
		// Many sections' types are called Config: name them by package.
		Namer: func(t reflect.Type) string {
			if t.Name() == "" || t.PkgPath() == "" {
				return ""
			}
			return path.Base(t.PkgPath()) + "." + t.Name()
		},
	}
	s := r.ReflectFromType(f.typ)
	s.Title = f.Title
	// The old topic keys are read for one release (pipeline warns): editors
	// mark them.
	for _, o := range []struct{ def, key, now string }{
		{"anomaly.Config", "alert_topic", "kafka.topics.alerts"},
		{"correlate.Config", "violation_topic", "kafka.topics.violations"},
	} {
		if d, ok := s.Definitions[o.def]; ok {
			if p, ok := d.Properties.Get(o.key); ok {
				p.Deprecated = true
				p.Description = "old key of " + o.now + "; write the topic there"
			}
		}
	}
	s.ID = jsonschema.ID("https://github.com/agentrail/agentrail/deployments/schema/" + f.Name)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var (
	durationType     = reflect.TypeFor[time.Duration]()
	ruleDurationType = reflect.TypeFor[anomaly.Duration]()
	ageType          = reflect.TypeFor[retention.Age]()
)

// mapper gives the types that decode from a string their string schema.
func mapper(t reflect.Type) *jsonschema.Schema {
	switch t {
	case durationType, ruleDurationType:
		return &jsonschema.Schema{Type: "string", Pattern: duration.Pattern,
			Description: duration.Grammar}
	case ageType:
		return &jsonschema.Schema{Type: "string", Pattern: duration.PeriodPattern,
			Description: duration.PeriodGrammar}
	}
	return nil
}
