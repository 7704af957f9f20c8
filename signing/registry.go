package signing

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// AgentKeys is one agent's keys as the registry file lists them.
type AgentKeys struct {
	AgentID string
	Keys    []KeySpec
}

// FieldError is one mistake in the keys of a registry file: file, line,
// field path ("agents[2].keys[0].public_key") and what is wrong.
type FieldError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// ParseRegistryKeys reads the agents' keys from a registry file (the format
// of reports/registry): agents[].id and agents[].keys[]. Everything else in
// the file is the registry's business and is ignored here; the keys are
// decoded strictly (an unknown field is an error) and checked, every
// mistake reported with its line. name is used in errors. It does no I/O.
func ParseRegistryKeys(raw []byte, name string) ([]AgentKeys, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("signing: %s: %w", name, err)
	}
	var errs []error
	bad := func(n *yaml.Node, field, format string, args ...any) {
		errs = append(errs, &FieldError{File: name, Line: n.Line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("signing: %s: empty registry", name)
	}
	doc := root.Content[0]
	agents := mapValue(doc, "agents")
	if agents == nil || agents.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("signing: %s: no agents list", name)
	}
	var out []AgentKeys
	ids := map[string]string{} // key id -> field path of its first definition
	for i, an := range agents.Content {
		f := fmt.Sprintf("agents[%d]", i)
		if an.Kind != yaml.MappingNode {
			bad(an, f, "is not a mapping")
			continue
		}
		ak := AgentKeys{}
		if idn := mapValue(an, "id"); idn != nil && idn.Kind == yaml.ScalarNode {
			ak.AgentID = idn.Value
		}
		keys := mapValue(an, "keys")
		if keys == nil {
			out = append(out, ak)
			continue
		}
		if keys.Kind != yaml.SequenceNode {
			bad(keys, f+".keys", "must be a list")
			continue
		}
		if ak.AgentID == "" {
			bad(an, f+".id", "is required for an agent with keys")
		}
		for j, kn := range keys.Content {
			kf := fmt.Sprintf("%s.keys[%d]", f, j)
			if kn.Kind != yaml.MappingNode {
				bad(kn, kf, "is not a mapping")
				continue
			}
			ok := true
			for x := 0; x+1 < len(kn.Content); x += 2 {
				if k := kn.Content[x]; !slices.Contains(specFields, k.Value) {
					bad(k, kf+"."+k.Value, "unknown field (known: %v)", specFields)
					ok = false
				}
			}
			var spec KeySpec
			if err := kn.Decode(&spec); err != nil {
				bad(kn, kf, "%v", err)
				continue
			}
			if !ok {
				continue
			}
			for _, p := range spec.Check() {
				line := kn
				if vn := mapKey(kn, p.Field); vn != nil {
					line = vn
				}
				bad(line, kf+"."+p.Field, "%s", p.Msg)
			}
			if spec.ID != "" {
				if first, dup := ids[spec.ID]; dup {
					bad(kn, kf+".id", "key id %q is already used at %s (key ids are unique across the registry)", spec.ID, first)
				} else {
					ids[spec.ID] = kf
				}
			}
			ak.Keys = append(ak.Keys, spec)
		}
		out = append(out, ak)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// LoadRegistry reads a registry file and returns a verifier of every key in
// it, with HMAC secrets read from their files or environment variables.
func LoadRegistry(path string, skew time.Duration) (*Verifier, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing: read registry: %w", err)
	}
	agents, err := ParseRegistryKeys(raw, path)
	if err != nil {
		return nil, err
	}
	var keys []Key
	var errs []error
	for i, a := range agents {
		for j, spec := range a.Keys {
			k, err := Resolve(a.AgentID, spec)
			if err != nil {
				errs = append(errs, fmt.Errorf("signing: %s: agents[%d].keys[%d] (key %s): %w", path, i, j, spec.ID, err))
				continue
			}
			keys = append(keys, k)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return NewVerifier(skew, keys...)
}

// mapValue returns the value node of key in mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// mapKey returns the key node of key in mapping n (its line is the
// field's), or nil.
func mapKey(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return nil
}
