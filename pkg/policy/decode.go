package policy

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/token"
)

// Bounds on what a policy document may make the parser do. A policy is a
// few levels deep; anchors and aliases let a few hundred bytes expand to
// gigabytes (a "billion laughs"), so they are refused, as are tags.
const (
	maxDepth = 32
	// maxErrors is how many problems one parse reports; the rest are
	// counted in a last line.
	maxErrors = 50
	// maxValueLen bounds a value quoted in an error message.
	maxValueLen = 60
)

// precheck scans the document's tokens (linear in its size) before the
// parser builds anything: anchors, aliases, merge keys and tags are
// refused, and so is nesting deeper than maxDepth, flow ([ {) or block
// (indentation).
func (v *validator) precheck(data []byte) bool {
	tokens := lexer.Tokenize(string(data))
	flow := 0
	var indents []int // columns of the open block levels
	line := 0
	for _, tk := range tokens {
		pos := tk.Position
		switch tk.Type {
		case token.AnchorType, token.AliasType:
			v.failPos(pos, "", "anchors and aliases (&name, *name) are not supported: write the values out")
			return false
		case token.MergeKeyType:
			v.failPos(pos, "", "merge keys (<<) are not supported: write the keys out")
			return false
		case token.TagType:
			v.failPos(pos, "", "tags (%s) are not supported: write the value plainly", short(tk.Value))
			return false
		case token.SequenceStartType, token.MappingStartType:
			flow++
		case token.SequenceEndType, token.MappingEndType:
			flow--
		}
		if pos != nil && pos.Line != line && flow == 0 {
			line = pos.Line
			for len(indents) > 0 && indents[len(indents)-1] >= pos.Column {
				indents = indents[:len(indents)-1]
			}
			indents = append(indents, pos.Column)
		}
		if flow+len(indents) > maxDepth {
			v.failPos(pos, "", "nested more than %d levels deep: a policy needs a few", maxDepth)
			return false
		}
	}
	return true
}

// decode fills out (a pointer to a struct with yaml tags) from node,
// reporting every problem it finds (unknown or repeated keys, values of the
// wrong type) with its line, column and field, and going on to the next.
func (v *validator) decode(node ast.Node, out reflect.Value, path string) {
	node = unwrap(node)
	if node == nil || isNull(node) {
		return // absent: the field stays unset
	}
	switch out.Kind() {
	case reflect.Pointer:
		elem := reflect.New(out.Type().Elem())
		good := v.decodeItem(node, elem.Elem(), path)
		// A section is kept with what could be read of it; a wrong scalar
		// stays unset, so it is not also reported "missing" or out of range.
		if good || elem.Elem().Kind() == reflect.Struct {
			out.Set(elem)
		}
	case reflect.Struct:
		m, ok := node.(*ast.MappingNode)
		if !ok {
			v.failAt(node, path, "want a mapping (key: value lines), got %s", describe(node))
			return
		}
		fields := map[string]int{}
		var names []string
		for i := range out.NumField() {
			if tag := out.Type().Field(i).Tag.Get("yaml"); tag != "" {
				fields[tag] = i
				names = append(names, tag)
			}
		}
		seen := map[string]*token.Token{}
		for _, kv := range m.Values {
			key := kv.Key.String()
			at := path + "." + key
			if first, dup := seen[key]; dup {
				v.failAt(kv.Key, at, "given twice (first at line %d)", first.Position.Line)
				continue
			}
			seen[key] = kv.Key.GetToken()
			i, known := fields[key]
			if !known {
				v.failAt(kv.Key, at, "unknown field %s; known here: %s", short(key), strings.Join(names, ", "))
				continue
			}
			v.decode(kv.Value, out.Field(i), at)
		}
	case reflect.Slice:
		seq, ok := node.(*ast.SequenceNode)
		if !ok {
			v.failAt(node, path, "want a list ([a, b] or - lines), got %s", describe(node))
			return
		}
		list := reflect.MakeSlice(out.Type(), 0, len(seq.Values))
		for i, item := range seq.Values {
			elem := reflect.New(out.Type().Elem()).Elem()
			at := fmt.Sprintf("%s[%d]", path, i)
			if v.decodeItem(item, elem, at) {
				list = reflect.Append(list, elem)
			}
		}
		out.Set(list)
	default:
		v.decodeItem(node, out, path)
	}
}

// decodeItem decodes a scalar or a free-form value (any); false when it
// was wrong (and reported).
func (v *validator) decodeItem(node ast.Node, out reflect.Value, path string) bool {
	node = unwrap(node)
	switch out.Kind() {
	case reflect.Interface:
		x, ok := v.toAny(node, path)
		if ok && x != nil {
			out.Set(reflect.ValueOf(x))
		}
		return ok
	case reflect.String:
		s, ok := scalarString(node)
		if !ok {
			v.failAt(node, path, "want text, got %s", describe(node))
			return false
		}
		out.SetString(s)
	case reflect.Bool:
		b, ok := node.(*ast.BoolNode)
		if !ok {
			v.failAt(node, path, "want true or false, got %s", describe(node))
			return false
		}
		out.SetBool(b.Value)
	case reflect.Int64:
		n, ok := node.(*ast.IntegerNode)
		if !ok {
			if s, isStr := node.(*ast.StringNode); isStr && s.Value != "" && strings.Trim(s.Value, "0123456789") == "" {
				v.failAt(node, path, "%s is far too large", short(s.Value))
			} else {
				v.failAt(node, path, "want a whole number, got %s", describe(node))
			}
			return false
		}
		switch x := n.Value.(type) {
		case int64:
			out.SetInt(x)
		case uint64:
			if x > math.MaxInt64 {
				v.failAt(node, path, "%d is far too large", x)
				return false
			}
			out.SetInt(int64(x))
		}
	default:
		before := len(v.errs) + v.dropped
		v.decode(node, out, path)
		return len(v.errs)+v.dropped == before
	}
	return true
}

// toAny converts a free-form value (an allow-list item, a schedule) the way
// a YAML decoder would: mappings to map[string]any, lists to []any, whole
// numbers to uint64 (int64 when negative), text to string. Repeated keys are
// reported.
func (v *validator) toAny(node ast.Node, path string) (any, bool) {
	node = unwrap(node)
	switch n := node.(type) {
	case nil, *ast.NullNode:
		return nil, true
	case *ast.MappingNode:
		out := make(map[string]any, len(n.Values))
		ok := true
		for _, kv := range n.Values {
			key := kv.Key.String()
			if _, dup := out[key]; dup {
				v.failAt(kv.Key, path+"."+key, "given twice")
				ok = false
				continue
			}
			x, good := v.toAny(kv.Value, path+"."+key)
			out[key] = x
			ok = ok && good
		}
		return out, ok
	case *ast.SequenceNode:
		out := make([]any, 0, len(n.Values))
		ok := true
		for i, item := range n.Values {
			x, good := v.toAny(item, fmt.Sprintf("%s[%d]", path, i))
			out = append(out, x)
			ok = ok && good
		}
		return out, ok
	case *ast.IntegerNode:
		switch x := n.Value.(type) {
		case int64:
			if x >= 0 {
				return uint64(x), true
			}
			return x, true
		case uint64:
			return x, true
		}
	case *ast.BoolNode:
		return n.Value, true
	}
	if s, ok := scalarString(node); ok {
		return s, true
	}
	v.failAt(node, path, "unexpected %s", describe(node))
	return nil, false
}

// unwrap looks through the document and mapping-value wrappers.
func unwrap(n ast.Node) ast.Node {
	for {
		switch x := n.(type) {
		case *ast.DocumentNode:
			n = x.Body
		case *ast.MappingValueNode:
			// A lone "key: value" is a mapping of one.
			return &ast.MappingNode{BaseNode: x.BaseNode, Values: []*ast.MappingValueNode{x}}
		default:
			return n
		}
	}
}

func isNull(n ast.Node) bool { _, ok := n.(*ast.NullNode); return ok }

// scalarString is a scalar's text: strings, block literals, and numbers or
// booleans where text is wanted ("443" and 443 both name a port).
func scalarString(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		return x.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		return n.GetToken().Value, true
	}
	return "", false
}

// describe names what a node is, for "want X, got Y".
func describe(n ast.Node) string {
	switch x := n.(type) {
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.BoolNode:
		return fmt.Sprintf("%v", x.Value)
	case *ast.IntegerNode, *ast.FloatNode:
		return "the number " + short(n.GetToken().Value)
	case *ast.StringNode:
		return "the text " + short(x.Value)
	case nil, *ast.NullNode:
		return "nothing"
	}
	return strings.TrimPrefix(reflect.TypeOf(n).String(), "*ast.")
}

// short quotes a value for an error message, cut to maxValueLen.
func short(x any) string {
	s := fmt.Sprint(x)
	if r := []rune(s); len(r) > maxValueLen {
		s = string(r[:maxValueLen]) + "..."
	}
	return fmt.Sprintf("%q", s)
}

// failAt records an error at node's position.
func (v *validator) failAt(node ast.Node, path, format string, args ...any) {
	if v.bad == nil {
		v.bad = map[string]bool{}
	}
	v.bad[path] = true
	var pos *token.Position
	if node != nil && node.GetToken() != nil {
		pos = node.GetToken().Position
	}
	v.failPos(pos, path, format, args...)
}

// failPos records an error at pos (or line 1 when unknown), at most
// maxErrors of them.
func (v *validator) failPos(pos *token.Position, path, format string, args ...any) {
	e := &Error{File: v.name, Field: strings.TrimPrefix(strings.TrimPrefix(path, "$"), "."), Msg: fmt.Sprintf(format, args...), Line: 1, Column: 1}
	if pos != nil {
		e.Line, e.Column = pos.Line, pos.Column
	}
	v.add(e)
}

// maxMsgLen bounds one error message, whatever values it quotes.
const maxMsgLen = 400

// add keeps the first maxErrors errors and counts the rest.
func (v *validator) add(e *Error) {
	e.Msg = strings.ReplaceAll(e.Msg, "\n", "; ") // one error, one line
	if strings.ContainsFunc(e.Field, func(r rune) bool { return !unicode.IsPrint(r) }) {
		e.Field = strconv.Quote(e.Field) // a key may hold anything
	}
	if r := []rune(e.Field); len(r) > maxValueLen*2 {
		e.Field = string(r[:maxValueLen*2]) + "..."
	}
	if r := []rune(e.Msg); len(r) > maxMsgLen {
		e.Msg = string(r[:maxMsgLen]) + "..."
	}
	if len(v.errs) < maxErrors {
		v.errs = append(v.errs, e)
		return
	}
	v.dropped++
}

// errors is what the parse found, in file order, with a last line counting
// what maxErrors left out.
func (v *validator) errors() []error {
	out := slices.Clone(v.errs)
	slices.SortStableFunc(out, func(a, b error) int {
		ea, eb := a.(*Error), b.(*Error)
		if ea.File != eb.File { // the policy's own first, then its list files
			if ea.File == v.name || eb.File == v.name {
				return map[bool]int{true: -1, false: 1}[ea.File == v.name]
			}
			return strings.Compare(ea.File, eb.File)
		}
		if ea.Line != eb.Line {
			return ea.Line - eb.Line
		}
		return ea.Column - eb.Column
	})
	if v.dropped > 0 {
		out = append(out, &Error{File: v.name, Msg: fmt.Sprintf("... and %d more errors", v.dropped)})
	}
	return out
}
