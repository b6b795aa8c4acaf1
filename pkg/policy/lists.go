package policy

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/goccy/go-yaml"
)

// List files (sources.deny_lists, sources.trust_lists) in the netset format
// FireHOL and Spamhaus publish: one address or CIDR a line, "#" and ";"
// starting a comment (whole-line or after the entry), blank lines. Lists may
// repeat and nest one another (two feeds often do): the union is kept, each
// source inside another dropped as redundant.
const (
	// maxListFile bounds one list file: a million CIDRs are about 16 MiB.
	maxListFile = 256 << 20
	// maxListed bounds the sources the lists of one kind give, together:
	// the kernel's trie of 1M entries takes about 100 MiB.
	maxListed = 1 << 23
	// preallocListed bounds what a list file's line count reserves.
	preallocListed = 1 << 20
)

// SourceList is a list file and what it gave.
type SourceList struct {
	// Path is absolute, or relative to the policy file's directory as
	// written (a policy parsed from memory: the working directory).
	Path string
	// Entries is the file's valid lines (before the union drops repeats).
	Entries int
	// File is Path made absolute: what to watch.
	File string `json:"-"`
}

// lists reads the list files of one kind, reporting each bad line with its
// file and line, and returns them and their entries appended to all.
func (v *validator) lists(path string, files []string, all []netip.Prefix) ([]SourceList, []netip.Prefix) {
	var out []SourceList
	seen := map[string]bool{}
	for i, f := range files {
		at := fmt.Sprintf("%s[%d]", path, i)
		full := f
		if !filepath.IsAbs(full) {
			full = filepath.Join(v.dir, f)
		}
		if seen[full] {
			v.fail(at, "%s is listed twice", f)
			continue
		}
		seen[full] = true
		before := len(all)
		var ok bool
		if all, ok = v.listFile(at, full, all); !ok {
			continue
		}
		abs, err := filepath.Abs(full)
		if err != nil {
			abs = full
		}
		out = append(out, SourceList{Path: f, Entries: len(all) - before, File: abs})
		if len(all) > maxListed {
			v.fail(at, "the %s lists give more than %d sources", path, maxListed)
			return out, nil
		}
	}
	return out, all
}

// listFile appends one netset file's entries to out. The file is as
// trusted as the policy itself (owned by root or the reader, writable by
// nobody else: a list decides who reaches the host too). out grows once, by
// the file's line count up to a million (32 MiB), so a list of a million
// entries costs what it holds, not append's doubling, and a file of empty
// lines or comments costs nothing beyond its bytes.
func (v *validator) listFile(at, path string, out []netip.Prefix) ([]netip.Prefix, bool) {
	data, err := readListFile(path)
	if err != nil {
		v.fail(at, "%v", err)
		return out, false
	}
	out = slices.Grow(out, min(bytes.Count(data, []byte("\n"))+1, preallocListed))
	start := len(out)
	ok := true
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if i := bytes.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		p, err := parsePrefix(string(line))
		if err != nil {
			v.add(&Error{File: path, Line: n, Column: 1, Field: strings.TrimPrefix(at, "$."), Msg: err.Error()})
			ok = false
			if len(v.errs) >= maxErrors {
				return out[:start], false
			}
			continue
		}
		out = append(out, p)
	}
	if !ok {
		return out[:start], false
	}
	return out, true
}

func readListFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%s: not a regular file", path)
	case st.Size() > maxListFile:
		return nil, fmt.Errorf("%s: %d bytes; a list file may be at most %d", path, st.Size(), maxListFile)
	}
	if err := checkTrusted(st); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	data := make([]byte, st.Size())
	n, err := io.ReadFull(f, data)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data[:n], nil
}

// union sorts prefixes by address then length and drops each one inside
// an earlier one: what is left is sorted and non-overlapping, as contains
// and overlapping need.
func union(prefixes []netip.Prefix) []netip.Prefix {
	slices.SortFunc(prefixes, comparePrefix)
	out := prefixes[:0]
	for _, p := range prefixes {
		if n := len(out); n > 0 && out[n-1].Overlaps(p) {
			continue // sorted: the earlier one holds p
		}
		out = append(out, p)
	}
	return slices.Clip(out)
}

// locate finds where a list file gives p, for an error about it.
func (v *validator) locate(lists []SourceList, p netip.Prefix) (string, int) {
	for _, l := range lists {
		path := l.Path
		if !filepath.IsAbs(path) {
			path = filepath.Join(v.dir, path)
		}
		data, err := readListFile(path)
		if err != nil {
			continue
		}
		for n, line := range bytes.Split(data, []byte("\n")) {
			if i := bytes.IndexAny(line, "#;"); i >= 0 {
				line = line[:i]
			}
			if q, err := parsePrefix(string(bytes.TrimSpace(line))); err == nil && q == p {
				return path, n + 1
			}
		}
	}
	return "", 0
}

// overlap reports a trusted source that overlaps a denied one, where the
// trusted one is written (the policy's sources.trust, or a list file's
// line), naming where the denied one is.
func (v *validator) overlap(denied, trusted netip.Prefix, p *Policy) {
	where := "sources.deny"
	if !slices.Contains(p.DenyInline, denied) {
		if f, n := v.locate(p.DenyLists, denied); f != "" {
			where = fmt.Sprintf("%s:%d", f, n)
		}
	}
	msg := fmt.Sprintf("%s overlaps denied %s (%s): a source cannot be both", trusted, denied, where)
	if !slices.Contains(p.TrustInline, trusted) {
		if f, n := v.locate(p.TrustLists, trusted); f != "" {
			v.add(&Error{File: f, Line: n, Column: 1, Field: "sources.trust_lists", Msg: msg})
			return
		}
	}
	v.fail("$.sources.trust", "%s", msg)
}

// ListFiles are the absolute paths of the policy's list files.
func (p *Policy) ListFiles() []string {
	var out []string
	for _, l := range append(slices.Clone(p.DenyLists), p.TrustLists...) {
		out = append(out, l.File)
	}
	return out
}

// ListFilesOf reads, leniently, the list files a policy file names, for a
// caller watching them while the policy is refused (a bad list line must
// be fixable by fixing the list). nil when the file cannot be read.
func ListFilesOf(path string) (files []string) {
	defer func() {
		if recover() != nil {
			files = nil // a YAML the parser chokes on names none
		}
	}()
	data, err := os.ReadFile(path)
	if err != nil || len(data) > maxFileSize {
		return nil
	}
	var raw struct {
		Sources struct {
			DenyLists  []string `yaml:"deny_lists"`
			TrustLists []string `yaml:"trust_lists"`
		} `yaml:"sources"`
	}
	_ = yaml.Unmarshal(data, &raw)
	dir := filepath.Dir(path)
	for _, f := range append(raw.Sources.DenyLists, raw.Sources.TrustLists...) {
		if !filepath.IsAbs(f) {
			f = filepath.Join(dir, f)
		}
		if abs, err := filepath.Abs(f); err == nil {
			files = append(files, abs)
		}
	}
	return files
}
