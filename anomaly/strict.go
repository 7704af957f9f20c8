package anomaly

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentrail/agentrail/internal/duration"
)

// Problem is one mistake in a rule file: where, which field, what is wrong.
type Problem struct {
	Line, Column int
	Field        string // path of the field, e.g. rules[2].window.size
	Message      string
}

func (p Problem) String() string {
	field := p.Field
	if field == "" {
		field = "(document)"
	}
	return fmt.Sprintf("%d:%d: %s: %s", p.Line, p.Column, field, p.Message)
}

// Problems is every mistake found in a rule file, in the order of the file.
// ParseRules returns it as its error.
type Problems struct {
	File string
	List []Problem
}

func (p *Problems) Error() string {
	var b strings.Builder
	for i, pr := range p.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		if p.File != "" {
			b.WriteString(p.File)
			b.WriteByte(':')
		}
		b.WriteString(pr.String())
	}
	return b.String()
}

// Duration is a rule file duration, in the grammar of every agentrail file
// (internal/duration): Go syntax (90s, 10m, 1h30m) plus days (30d) and
// weeks (2w).
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// MarshalYAML writes d the way it is read.
func (d Duration) MarshalYAML() (any, error) { return formatDuration(time.Duration(d)), nil }

func formatDuration(d time.Duration) string { return duration.Format(d) }

var durationType = reflect.TypeOf(Duration(0))

type position struct{ line, col int }

// strictDecoder decodes a YAML node tree into Go values, refusing unknown
// fields and mistyped values, and records where every field was, so that
// later checks can name the line. It collects every mistake instead of
// stopping at the first.
type strictDecoder struct {
	probs []Problem
	pos   map[string]position // field path -> position of its value
	bad   map[string]bool     // fields that did not decode: later checks stay quiet about them
	nodes int                 // decoded so far, aliases expanded
}

// maxNodes bounds the work of a rule file whose aliases expand
// exponentially ("billion laughs").
const maxNodes = 200_000

func newStrictDecoder() *strictDecoder {
	return &strictDecoder{pos: map[string]position{}, bad: map[string]bool{}}
}

func (d *strictDecoder) problemAt(n *yaml.Node, field, format string, args ...any) {
	d.bad[field] = true
	d.probs = append(d.probs, Problem{Line: n.Line, Column: n.Column, Field: field, Message: fmt.Sprintf(format, args...)})
}

// problem reports a mistake in an already decoded field, at the position of
// the field or of its nearest recorded parent.
func (d *strictDecoder) problem(field, format string, args ...any) {
	for f := field; f != ""; f = parentPath(f) {
		if d.bad[f] {
			return
		}
	}
	p, ok := d.pos[field]
	for f := field; !ok && f != ""; {
		f = parentPath(f)
		p, ok = d.pos[f]
	}
	d.probs = append(d.probs, Problem{Line: p.line, Column: p.col, Field: field, Message: fmt.Sprintf(format, args...)})
}

// has reports whether the field was written in the file.
func (d *strictDecoder) has(field string) bool {
	_, ok := d.pos[field]
	return ok
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func (d *strictDecoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if d.nodes++; d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.problemAt(n, path, "the file expands to more than %d values (aliases?)", maxNodes)
		}
		return
	}
	if path != "" {
		d.pos[path] = position{n.Line, n.Column}
	}
	isNull := n.Kind == yaml.ScalarNode && n.Tag == "!!null"
	if v.Type() == durationType {
		if isNull {
			return
		}
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			d.problemAt(n, path, "must be %s", duration.Grammar)
			return
		}
		dur, err := duration.Parse(n.Value)
		if err != nil {
			if msg := err.Error(); !strings.Contains(msg, " is not ") {
				d.problemAt(n, path, "%s", msg) // months, years, too long
			} else {
				d.problemAt(n, path, "must be %s (got %q)", duration.Grammar, n.Value)
			}
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull {
			return
		}
		nv := reflect.New(v.Type().Elem())
		d.decode(n, nv.Elem(), path)
		v.Set(nv)
	case reflect.Struct:
		if isNull {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.problemAt(n, path, "must be a mapping of fields")
			return
		}
		fields := structFields(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				d.problemAt(k, path, "field names must be plain words")
				continue
			}
			fp := joinPath(path, k.Value)
			if seen[k.Value] {
				d.problemAt(k, fp, "field given twice")
				continue
			}
			seen[k.Value] = true
			idx, ok := fields[k.Value]
			if !ok {
				d.problemAt(k, fp, "unknown field (known: %s)", strings.Join(sortedKeys(fields), ", "))
				continue
			}
			d.decode(val, v.Field(idx), fp)
		}
	case reflect.Slice:
		if isNull {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.problemAt(n, path, "must be a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if isNull {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.problemAt(n, path, "must be a mapping")
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Value == "" {
				d.problemAt(k, path, "keys must be non-empty plain words")
				continue
			}
			fp := joinPath(path, k.Value)
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				d.problemAt(k, fp, "key given twice")
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, fp)
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	default:
		if n.Kind != yaml.ScalarNode {
			d.problemAt(n, path, "must be %s", kindName(v.Kind()))
			return
		}
		if isNull {
			return
		}
		if v.Kind() == reflect.String && n.Tag == "!!timestamp" {
			v.SetString(n.Value) // dates are strings to the rules
			return
		}
		if v.Kind() == reflect.String && n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float" {
			// true/false and other typed scalars are almost always a
			// mistake where a name is expected.
			d.problemAt(n, path, "must be a string (quote it)")
			return
		}
		tmp := reflect.New(v.Type())
		if err := n.Decode(tmp.Interface()); err != nil {
			d.problemAt(n, path, "must be %s (got %q)", kindName(v.Kind()), n.Value)
			return
		}
		v.Set(tmp.Elem())
	}
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	}
	return "a " + k.String()
}

// structFields maps yaml names to field indexes.
func structFields(t reflect.Type) map[string]int {
	f := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := strings.Split(sf.Tag.Get("yaml"), ",")[0]
		if !sf.IsExported() || tag == "" || tag == "-" {
			continue
		}
		f[tag] = i
	}
	return f
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
