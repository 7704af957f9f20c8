package main

// A small PromQL parser for checking deployments/ (alert rules, dashboard
// queries): syntax, the types of function arguments and operands (rate()
// of an instant vector, a comparison of two scalars without bool, ...) and
// the selectors used, so the metric and label names can be checked against
// what the services register. It stands in for
// github.com/prometheus/prometheus/promql/parser, whose module would add
// about 190 modules to go.mod's graph (and whose `go mod tidy` needs a
// module version the proxy does not serve). It covers the PromQL the rules
// and dashboards use; an expression it does not know fails the test, which
// is the safe direction.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

type pqType int

const (
	pqScalar pqType = iota
	pqVector
	pqMatrix
	pqString
)

func (t pqType) String() string {
	return [...]string{"scalar", "instant vector", "range vector", "string"}[t]
}

// pqSelector is one vector selector: the metric name (may be empty) and
// the label names its matchers use.
type pqSelector struct {
	Name   string
	Labels []string
}

type pqTok struct {
	kind string // ident, num, dur, str, op, eof
	val  string
	pos  int
}

func pqLex(s string) ([]pqTok, error) {
	var toks []pqTok
	i := 0
	isIdent := func(r byte, first bool) bool {
		return r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (!first && (r == ':' || (r >= '0' && r <= '9')))
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case isIdent(c, true):
			j := i + 1
			for j < len(s) && isIdent(s[j], false) {
				j++
			}
			toks = append(toks, pqTok{"ident", s[i:j], i})
			i = j
		case c >= '0' && c <= '9' || (c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9'):
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
				j++
			}
			if j < len(s) && strings.ContainsRune("smhdwy", rune(s[j])) && !strings.Contains(s[i:j], ".") {
				// A duration: one or more <int><unit> pairs.
				for j < len(s) && strings.ContainsRune("smhdwy", rune(s[j])) {
					if strings.HasPrefix(s[j:], "ms") {
						j += 2
					} else {
						j++
					}
					k := j
					for k < len(s) && s[k] >= '0' && s[k] <= '9' {
						k++
					}
					if k == j || k == len(s) || !strings.ContainsRune("smhdwy", rune(s[k])) {
						break
					}
					j = k
				}
				if j < len(s) && s[j] != ':' && isIdent(s[j], false) {
					return nil, fmt.Errorf("bad duration %q at %d", s[i:j+1], i)
				}
				toks = append(toks, pqTok{"dur", s[i:j], i})
				i = j
				continue
			}
			if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
				j++
				if j < len(s) && (s[j] == '+' || s[j] == '-') {
					j++
				}
				for j < len(s) && s[j] >= '0' && s[j] <= '9' {
					j++
				}
			}
			if _, err := strconv.ParseFloat(s[i:j], 64); err != nil {
				return nil, fmt.Errorf("bad number %q at %d", s[i:j], i)
			}
			if j < len(s) && isIdent(s[j], false) {
				return nil, fmt.Errorf("bad number %q at %d", s[i:j+1], i)
			}
			toks = append(toks, pqTok{"num", s[i:j], i})
			i = j
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			v := s[i+1 : j]
			if c != '`' {
				uq, err := strconv.Unquote(`"` + strings.ReplaceAll(v, `"`, `\"`) + `"`)
				if c == '"' {
					uq, err = strconv.Unquote(s[i : j+1])
				}
				if err != nil {
					return nil, fmt.Errorf("bad string %s at %d: %w", s[i:j+1], i, err)
				}
				v = uq
			}
			toks = append(toks, pqTok{"str", v, i})
			i = j + 1
		default:
			op := ""
			for _, o := range []string{"==", "!=", ">=", "<=", "=~", "!~", ">", "<", "=", "+", "-", "*", "/", "%", "^", "(", ")", "{", "}", "[", "]", ",", ":", "@"} {
				if strings.HasPrefix(s[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, fmt.Errorf("unexpected character %q at %d", c, i)
			}
			toks = append(toks, pqTok{"op", op, i})
			i += len(op)
		}
	}
	return append(toks, pqTok{"eof", "", len(s)}), nil
}

// pqFunc is a function's signature: argument types, how many of the last
// are optional, whether the last repeats, and the result type.
type pqFunc struct {
	args     []pqType
	optional int
	variadic bool
	ret      pqType
}

var pqFuncs = func() map[string]pqFunc {
	m := map[string]pqFunc{
		"time":               {nil, 0, false, pqScalar},
		"pi":                 {nil, 0, false, pqScalar},
		"scalar":             {[]pqType{pqVector}, 0, false, pqScalar},
		"vector":             {[]pqType{pqScalar}, 0, false, pqVector},
		"histogram_quantile": {[]pqType{pqScalar, pqVector}, 0, false, pqVector},
		"histogram_fraction": {[]pqType{pqScalar, pqScalar, pqVector}, 0, false, pqVector},
		"quantile_over_time": {[]pqType{pqScalar, pqMatrix}, 0, false, pqVector},
		"predict_linear":     {[]pqType{pqMatrix, pqScalar}, 0, false, pqVector},
		"clamp":              {[]pqType{pqVector, pqScalar, pqScalar}, 0, false, pqVector},
		"clamp_min":          {[]pqType{pqVector, pqScalar}, 0, false, pqVector},
		"clamp_max":          {[]pqType{pqVector, pqScalar}, 0, false, pqVector},
		"round":              {[]pqType{pqVector, pqScalar}, 1, false, pqVector},
		"label_replace":      {[]pqType{pqVector, pqString, pqString, pqString, pqString}, 0, false, pqVector},
		"label_join":         {[]pqType{pqVector, pqString, pqString, pqString}, 0, true, pqVector},
		"sort_by_label":      {[]pqType{pqVector, pqString}, 0, true, pqVector},
		"sort_by_label_desc": {[]pqType{pqVector, pqString}, 0, true, pqVector},
	}
	for _, f := range strings.Fields(`rate irate increase delta idelta deriv changes resets avg_over_time
		min_over_time max_over_time sum_over_time count_over_time last_over_time present_over_time
		stddev_over_time stdvar_over_time absent_over_time mad_over_time`) {
		m[f] = pqFunc{[]pqType{pqMatrix}, 0, false, pqVector}
	}
	for _, f := range strings.Fields(`abs absent ceil floor exp ln log2 log10 sqrt sgn sort sort_desc timestamp
		histogram_count histogram_sum histogram_avg deg rad`) {
		m[f] = pqFunc{[]pqType{pqVector}, 0, false, pqVector}
	}
	for _, f := range strings.Fields(`day_of_week day_of_month day_of_year days_in_month hour minute month year`) {
		m[f] = pqFunc{[]pqType{pqVector}, 1, false, pqVector}
	}
	return m
}()

var pqAggs = map[string]pqType{ // the parameter's type, or -1 for none
	"sum": -1, "avg": -1, "min": -1, "max": -1, "count": -1, "group": -1, "stddev": -1, "stdvar": -1,
	"topk": pqScalar, "bottomk": pqScalar, "quantile": pqScalar, "limitk": pqScalar, "limit_ratio": pqScalar,
	"count_values": pqString,
}

var pqPrec = map[string]int{
	"or": 1, "and": 2, "unless": 2,
	"==": 3, "!=": 3, ">": 3, "<": 3, ">=": 3, "<=": 3,
	"+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6,
}

type pqParser struct {
	toks []pqTok
	i    int
	sels []pqSelector
}

// parsePromQL parses expr and returns its type and the selectors it uses.
func parsePromQL(expr string) (pqType, []pqSelector, error) {
	toks, err := pqLex(expr)
	if err != nil {
		return 0, nil, err
	}
	p := &pqParser{toks: toks}
	t, err := p.expr(1)
	if err != nil {
		return 0, nil, err
	}
	if tok := p.peek(); tok.kind != "eof" {
		return 0, nil, fmt.Errorf("unexpected %q at %d", tok.val, tok.pos)
	}
	return t, p.sels, nil
}

func (p *pqParser) peek() pqTok { return p.toks[p.i] }
func (p *pqParser) next() pqTok { t := p.toks[p.i]; p.i++; return t }
func (p *pqParser) is(kind, val string) bool {
	t := p.peek()
	return t.kind == kind && t.val == val
}
func (p *pqParser) want(kind, val string) error {
	t := p.next()
	if t.kind != kind || (val != "" && t.val != val) {
		return fmt.Errorf("expected %s %q at %d, got %q", kind, val, t.pos, t.val)
	}
	return nil
}

func (p *pqParser) binop() (string, bool) {
	t := p.peek()
	if t.kind == "op" || (t.kind == "ident" && (t.val == "and" || t.val == "or" || t.val == "unless" || t.val == "atan2")) {
		if _, ok := pqPrec[t.val]; ok {
			return t.val, true
		}
	}
	return "", false
}

func (p *pqParser) expr(minPrec int) (pqType, error) {
	lhs, err := p.unary()
	if err != nil {
		return 0, err
	}
	for {
		op, ok := p.binop()
		if !ok || pqPrec[op] < minPrec {
			return lhs, nil
		}
		opTok := p.next()
		cmp := pqPrec[op] == 3
		set := pqPrec[op] <= 2
		isBool := false
		if p.is("ident", "bool") {
			if !cmp {
				return 0, fmt.Errorf("bool modifier on non-comparison %q at %d", op, opTok.pos)
			}
			p.next()
			isBool = true
		}
		matching := false
		if p.is("ident", "on") || p.is("ident", "ignoring") {
			p.next()
			if err := p.labelList(); err != nil {
				return 0, err
			}
			matching = true
		}
		if p.is("ident", "group_left") || p.is("ident", "group_right") {
			if set {
				return 0, fmt.Errorf("group modifier on set operator %q at %d", op, opTok.pos)
			}
			p.next()
			if p.is("op", "(") {
				if err := p.labelList(); err != nil {
					return 0, err
				}
			}
			matching = true
		}
		next := pqPrec[op] + 1
		if op == "^" {
			next = pqPrec[op] // right-associative
		}
		rhs, err := p.expr(next)
		if err != nil {
			return 0, err
		}
		if lhs == pqMatrix || rhs == pqMatrix || lhs == pqString || rhs == pqString {
			return 0, fmt.Errorf("operator %q at %d on a %s and a %s", op, opTok.pos, lhs, rhs)
		}
		if set && (lhs != pqVector || rhs != pqVector) {
			return 0, fmt.Errorf("set operator %q at %d needs two instant vectors", op, opTok.pos)
		}
		if cmp && lhs == pqScalar && rhs == pqScalar && !isBool {
			return 0, fmt.Errorf("comparison of two scalars at %d needs bool", opTok.pos)
		}
		if matching && (lhs != pqVector || rhs != pqVector) {
			return 0, fmt.Errorf("vector matching at %d needs two instant vectors", opTok.pos)
		}
		if lhs == pqScalar && rhs == pqScalar {
			lhs = pqScalar
		} else {
			lhs = pqVector
		}
	}
}

func (p *pqParser) unary() (pqType, error) {
	if p.is("op", "-") || p.is("op", "+") {
		t := p.next()
		x, err := p.expr(pqPrec["^"])
		if err != nil {
			return 0, err
		}
		if x != pqScalar && x != pqVector {
			return 0, fmt.Errorf("unary %q at %d on a %s", t.val, t.pos, x)
		}
		return x, nil
	}
	return p.postfix()
}

func (p *pqParser) postfix() (pqType, error) {
	t, bareSelector, err := p.primary()
	if err != nil {
		return 0, err
	}
	for {
		switch {
		case p.is("op", "["):
			open := p.next()
			if err := p.want("dur", ""); err != nil {
				return 0, err
			}
			if p.is("op", ":") {
				p.next()
				if p.peek().kind == "dur" {
					p.next()
				}
				if t != pqVector {
					return 0, fmt.Errorf("subquery at %d of a %s", open.pos, t)
				}
			} else if !bareSelector {
				return 0, fmt.Errorf("range at %d on an expression, not a selector (use a subquery [d:s])", open.pos)
			}
			if err := p.want("op", "]"); err != nil {
				return 0, err
			}
			t, bareSelector = pqMatrix, false
		case p.is("ident", "offset"):
			off := p.next()
			if p.is("op", "-") {
				p.next()
			}
			if err := p.want("dur", ""); err != nil {
				return 0, err
			}
			if t != pqVector && t != pqMatrix {
				return 0, fmt.Errorf("offset at %d on a %s", off.pos, t)
			}
		case p.is("op", "@"):
			p.next()
			if tok := p.next(); tok.kind != "num" && !(tok.kind == "ident" && (tok.val == "start" || tok.val == "end")) {
				return 0, fmt.Errorf("bad @ modifier at %d", tok.pos)
			} else if tok.kind == "ident" {
				if err := p.want("op", "("); err != nil {
					return 0, err
				}
				if err := p.want("op", ")"); err != nil {
					return 0, err
				}
			}
		default:
			return t, nil
		}
	}
}

// primary parses one operand; bareSelector says it is a plain vector
// selector (the only thing a range [d] may follow).
func (p *pqParser) primary() (pqType, bool, error) {
	t := p.next()
	switch t.kind {
	case "num", "dur":
		return pqScalar, false, nil
	case "str":
		return pqString, false, nil
	case "op":
		switch t.val {
		case "(":
			x, err := p.expr(1)
			if err != nil {
				return 0, false, err
			}
			return x, false, p.want("op", ")")
		case "{":
			p.i--
			err := p.selector("")
			return pqVector, true, err
		}
		return 0, false, fmt.Errorf("unexpected %q at %d", t.val, t.pos)
	case "ident":
		if strings.EqualFold(t.val, "inf") || strings.EqualFold(t.val, "nan") {
			return pqScalar, false, nil
		}
		if param, ok := pqAggs[t.val]; ok {
			return p.aggregation(t, param)
		}
		if p.is("op", "(") {
			f, ok := pqFuncs[t.val]
			if !ok {
				return 0, false, fmt.Errorf("unknown function %q at %d", t.val, t.pos)
			}
			return p.call(t, f)
		}
		if _, kw := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
			"group_right": true, "bool": true, "offset": true, "and": true, "or": true, "unless": true}[t.val]; kw {
			return 0, false, fmt.Errorf("unexpected keyword %q at %d", t.val, t.pos)
		}
		err := p.selector(t.val)
		return pqVector, true, err
	}
	return 0, false, fmt.Errorf("unexpected end of expression")
}

func (p *pqParser) selector(name string) error {
	sel := pqSelector{Name: name}
	if p.is("op", "{") {
		p.next()
		nonEmpty := false
		for !p.is("op", "}") {
			l := p.next()
			if l.kind != "ident" {
				return fmt.Errorf("expected a label name at %d, got %q", l.pos, l.val)
			}
			op := p.next()
			if op.kind != "op" || (op.val != "=" && op.val != "!=" && op.val != "=~" && op.val != "!~") {
				return fmt.Errorf("expected a matcher operator at %d, got %q", op.pos, op.val)
			}
			v := p.next()
			if v.kind != "str" {
				return fmt.Errorf("expected a string at %d, got %q", v.pos, v.val)
			}
			if op.val == "=~" || op.val == "!~" {
				if _, err := regexp.Compile("^(?:" + v.val + ")$"); err != nil {
					return fmt.Errorf("label %s: bad regexp %q: %w", l.val, v.val, err)
				}
			}
			if l.val == "__name__" {
				if op.val == "=" {
					sel.Name = v.val
				}
			} else {
				sel.Labels = append(sel.Labels, l.val)
			}
			re := regexp.MustCompile("^(?:" + v.val + ")$")
			if (op.val == "=" && v.val != "") || (op.val == "=~" && !re.MatchString("")) {
				nonEmpty = true
			}
			if p.is("op", ",") {
				p.next()
			} else if !p.is("op", "}") {
				return fmt.Errorf("expected , or } at %d", p.peek().pos)
			}
		}
		p.next()
		if name == "" && !nonEmpty {
			return fmt.Errorf("selector without a name needs a non-empty matcher")
		}
	}
	p.sels = append(p.sels, sel)
	return nil
}

func (p *pqParser) labelList() error {
	if err := p.want("op", "("); err != nil {
		return err
	}
	for !p.is("op", ")") {
		if err := p.want("ident", ""); err != nil {
			return err
		}
		if p.is("op", ",") {
			p.next()
		} else if !p.is("op", ")") {
			return fmt.Errorf("expected , or ) at %d", p.peek().pos)
		}
	}
	p.next()
	return nil
}

func (p *pqParser) args() ([]pqType, error) {
	if err := p.want("op", "("); err != nil {
		return nil, err
	}
	var ts []pqType
	for !p.is("op", ")") {
		t, err := p.expr(1)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
		if p.is("op", ",") {
			p.next()
		} else if !p.is("op", ")") {
			return nil, fmt.Errorf("expected , or ) at %d", p.peek().pos)
		}
	}
	p.next()
	return ts, nil
}

func (p *pqParser) call(name pqTok, f pqFunc) (pqType, bool, error) {
	got, err := p.args()
	if err != nil {
		return 0, false, err
	}
	lo, hi := len(f.args)-f.optional, len(f.args)
	if f.variadic {
		hi = 1 << 20
	}
	if len(got) < lo || len(got) > hi {
		return 0, false, fmt.Errorf("%s at %d: %d arguments, want %d..%d", name.val, name.pos, len(got), lo, len(f.args))
	}
	for i, g := range got {
		want := f.args[min(i, len(f.args)-1)]
		if g != want {
			return 0, false, fmt.Errorf("%s at %d: argument %d is a %s, want a %s", name.val, name.pos, i+1, g, want)
		}
	}
	return f.ret, false, nil
}

func (p *pqParser) aggregation(name pqTok, param pqType) (pqType, bool, error) {
	grouped := false
	if p.is("ident", "by") || p.is("ident", "without") {
		p.next()
		if err := p.labelList(); err != nil {
			return 0, false, err
		}
		grouped = true
	}
	got, err := p.args()
	if err != nil {
		return 0, false, err
	}
	want := []pqType{pqVector}
	if param != -1 {
		want = []pqType{param, pqVector}
	}
	if len(got) != len(want) {
		return 0, false, fmt.Errorf("%s at %d: %d arguments, want %d", name.val, name.pos, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return 0, false, fmt.Errorf("%s at %d: argument %d is a %s, want a %s", name.val, name.pos, i+1, got[i], want[i])
		}
	}
	if !grouped && (p.is("ident", "by") || p.is("ident", "without")) {
		p.next()
		if err := p.labelList(); err != nil {
			return 0, false, err
		}
	}
	return pqVector, false, nil
}
