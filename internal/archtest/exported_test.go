// Package archtest holds checks of the tree's structure that keep it honest:
// they read the source, not run it.
package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/xdpguard/xdpguard"

// Every exported identifier of a package is used outside it, or is part of
// an exported declaration that is (a type of a field, a parameter or a
// result), or belongs to a const block (an enum) of which one member is:
// an export nobody needs is API surface to keep for nothing. Generated
// files (bpf2go) are left out; a package's own tests do not count as use
// (export_test.go is how a test reaches inside).
func TestNoExportedIdentifierIsUnused(t *testing.T) {
	root := "../.."
	type pkg struct {
		exported map[string]token.Position
		api      map[string]bool     // idents named inside exported declarations
		enums    map[string][]string // each const name -> its block's names
	}
	pkgs := map[string]*pkg{}
	used := map[string]map[string]bool{} // import path -> names used from other directories
	fset := token.NewFileSet()
	err := filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() && (info.Name() == ".git" || info.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		ip := module + "/" + filepath.ToSlash(rel)
		generated := len(f.Comments) > 0 && strings.Contains(f.Comments[0].Text(), "Code generated")
		if !strings.HasSuffix(path, "_test.go") && !generated && f.Name.Name != "main" {
			p := pkgs[ip]
			if p == nil {
				p = &pkg{exported: map[string]token.Position{}, api: map[string]bool{}, enums: map[string][]string{}}
				pkgs[ip] = p
			}
			collect(f, fset, p.exported, p.api, p.enums)
		}
		imports := map[string]string{}
		for _, im := range f.Imports {
			path := strings.Trim(im.Path.Value, `"`)
			if !strings.HasPrefix(path, module) {
				continue
			}
			name := filepath.Base(path)
			if im.Name != nil {
				name = im.Name.Name
			}
			imports[name] = path
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if se, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := se.X.(*ast.Ident); ok {
					if path, ok := imports[id.Name]; ok && path != ip {
						if used[path] == nil {
							used[path] = map[string]bool{}
						}
						used[path][se.Sel.Name] = true
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var unused []string
	for ip, p := range pkgs {
		for name, pos := range p.exported {
			enumUsed := false
			for _, member := range p.enums[name] {
				enumUsed = enumUsed || used[ip][member]
			}
			if !used[ip][name] && !p.api[name] && !enumUsed {
				unused = append(unused, pos.String()+": "+name)
			}
		}
	}
	sort.Strings(unused)
	for _, u := range unused {
		t.Errorf("exported but used nowhere outside its package: %s", u)
	}
}

// collect records a file's exported top-level identifiers, and the
// identifiers its exported declarations name (their API's types).
func collect(f *ast.File, fset *token.FileSet, exported map[string]token.Position, api map[string]bool, enums map[string][]string) {
	names := func(n ast.Node) {
		ast.Inspect(n, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && id.IsExported() {
				api[id.Name] = true
			}
			return true
		})
	}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if !d.Name.IsExported() {
				continue
			}
			if d.Recv == nil {
				exported[d.Name.Name] = fset.Position(d.Pos())
			}
			names(d.Type)
		case *ast.GenDecl:
			if d.Tok == token.CONST {
				var block []string
				for _, s := range d.Specs {
					for _, n := range s.(*ast.ValueSpec).Names {
						block = append(block, n.Name)
					}
				}
				for _, n := range block {
					enums[n] = block
				}
			}
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					if s.Name.IsExported() {
						exported[s.Name.Name] = fset.Position(s.Pos())
						names(s.Type)
					}
				case *ast.ValueSpec:
					for _, n := range s.Names {
						if n.IsExported() {
							exported[n.Name] = fset.Position(n.Pos())
							if s.Type != nil {
								names(s.Type)
							}
						}
					}
				}
			}
		}
	}
}
