package pipeline

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentrail/agentrail/internal/duration"
	"github.com/agentrail/agentrail/reports/retention"
)

// Warning is a setting the config file may still use in this release but
// not in the next: an old spelling or a moved key. Message names the field
// and what to write instead.
type Warning struct {
	File    string
	Line    int
	Message string
}

func (w Warning) String() string {
	if w.File == "" {
		return fmt.Sprintf("line %d: %s", w.Line, w.Message)
	}
	return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Message)
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	ageType       = reflect.TypeFor[retention.Age]()
	unmarshalType = reflect.TypeFor[yaml.Unmarshaler]()
)

// maxNodes bounds the work of a file whose aliases expand exponentially.
const maxNodes = 200_000

// checker walks the YAML tree beside the Go type it decodes into, before
// yaml decodes it: it refuses unknown keys (with their line), reads every
// duration and retention period in the grammar of internal/duration and
// rewrites it in place to the form the Go type's decoder reads, and
// collects warnings for old spellings. It records the line of every field
// it saw.
type checker struct {
	errs  []error
	warns []Warning
	lines map[string]int // field path -> line of its value
	nodes int
}

func (c *checker) fail(n *yaml.Node, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("line %d: "+format, append([]any{n.Line}, args...)...))
}

func (c *checker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) > 0 {
			c.walk(n.Content[0], t, path)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	if c.nodes++; c.nodes > maxNodes {
		if c.nodes == maxNodes+1 {
			c.fail(n, "the file expands to more than %d values (aliases?)", maxNodes)
		}
		return
	}
	if path != "" {
		if _, ok := c.lines[path]; !ok {
			c.lines[path] = n.Line
		}
	}
	isStr := n.Kind == yaml.ScalarNode && n.Tag == "!!str"
	switch {
	case t == durationType:
		if !isStr {
			return // yaml refuses it with its line
		}
		d, err := duration.Parse(n.Value)
		if err != nil {
			c.fail(n, "%s: %v", path, err)
			return
		}
		n.Value = d.String() // what time.ParseDuration reads
		return
	case t == ageType:
		if n.Kind != yaml.ScalarNode {
			return
		}
		_, old, err := duration.ParsePeriod(n.Value)
		if err == nil {
			_, err = retention.ParseAge(n.Value)
		}
		if err != nil {
			c.fail(n, "%s: %v", path, err)
			return
		}
		if old {
			c.warns = append(c.warns, Warning{Line: n.Line, Message: duration.OldSpelling(path, n.Value)})
		}
		return
	case reflect.PointerTo(t).Implements(unmarshalType) || t.Implements(unmarshalType):
		return // decodes itself
	}
	switch t.Kind() {
	case reflect.Pointer:
		c.walk(n, t.Elem(), path)
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			c.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			c.walk(n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value))
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" && k.Tag == "!!merge" {
				c.walk(v, t, path) // a merge: its keys are this mapping's
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				known := make([]string, 0, len(fields))
				for name := range fields {
					known = append(known, name)
				}
				slices.Sort(known)
				where := path
				if where == "" {
					where = "the top level"
				}
				c.fail(k, "field %s not found in %s (known: %s)", k.Value, where, strings.Join(known, ", "))
				continue
			}
			c.walk(v, ft, joinPath(path, k.Value))
		}
	}
}

// yamlFields maps the yaml names of t's fields, inline structs flattened,
// to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if !sf.IsExported() || name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name) // yaml's default
		}
		out[name] = sf.Type
	}
	return out
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// movedTopics are the topic keys of stage sections that moved under
// kafka.topics; the old keys are read for one release with a warning.
func movedTopics(cfg *Config) []struct {
	old, new     string
	oldVal, dest *string
} {
	return []struct {
		old, new     string
		oldVal, dest *string
	}{
		{"anomaly.alert_topic", "kafka.topics.alerts", &cfg.Anomaly.AlertTopic, &cfg.Kafka.Topics.Alerts},
		{"correlation.violation_topic", "kafka.topics.violations", &cfg.Correlation.ViolationTopic, &cfg.Kafka.Topics.Violations},
	}
}

// moveTopics moves an old topic key's value to its kafka.topics key, with a
// warning; both keys set to different values is an error.
func (c *checker) moveTopics(cfg *Config) {
	for _, m := range movedTopics(cfg) {
		line, set := c.lines[m.old]
		if !set || *m.oldVal == "" {
			continue
		}
		if *m.dest != "" && *m.dest != *m.oldVal {
			c.errs = append(c.errs, fmt.Errorf("line %d: %s: %q differs from %s %q; set only %s (the old key goes in the next release)",
				line, m.old, *m.oldVal, m.new, *m.dest, m.new))
			continue
		}
		c.warns = append(c.warns, Warning{Line: line, Message: fmt.Sprintf("%s is an old key; write the topic as %s (%s goes in the next release)", m.old, m.new, m.old)})
		*m.dest = *m.oldVal
	}
}

func (c *checker) err() error { return errors.Join(c.errs...) }
