// Command doublestar-oracle reports what github.com/bmatcuk/doublestar/v4
// FilepathGlob matches, and the key the Go cachew client's HashFiles would
// compute from those matches, so that cachew-rs can be compared against the
// real library (crates/cachew-client/tests/doublestar_oracle.rs).
//
// Usage:
//
//	doublestar-oracle -C DIR PATTERN...   one case: the patterns together
//	doublestar-oracle -C DIR -stdin       cases from stdin: a JSON array of
//	                                      arrays of patterns
//
// It prints a JSON array with one object per case. The HashFiles filtering
// below follows block/cachew client/files.go: each match is cleaned and
// Lstat'ed, only regular files are kept, duplicates are dropped, the paths are
// sorted, and the digest is SHA-256 over path, 0x00, contents, 0x00.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/bmatcuk/doublestar/v4"
)

type globResult struct {
	Pattern string   `json:"pattern"`
	Matches []string `json:"matches"`
	Error   string   `json:"error,omitempty"`
}

type caseResult struct {
	Patterns []string     `json:"patterns"`
	Globs    []globResult `json:"globs"`
	Files    []string     `json:"files"`
	Key      string       `json:"key,omitempty"`
	Error    string       `json:"error,omitempty"`
}

func run(patterns []string) caseResult {
	res := caseResult{Patterns: patterns, Files: []string{}, Globs: []globResult{}}
	if len(patterns) == 0 {
		res.Error = "no patterns"
		return res
	}
	seen := map[string]bool{}
	var failed error
	for _, p := range patterns {
		matches, err := doublestar.FilepathGlob(p)
		g := globResult{Pattern: p, Matches: []string{}}
		if err != nil {
			g.Error = err.Error()
			if failed == nil {
				failed = fmt.Errorf("invalid pattern %q: %w", p, err)
			}
		}
		for _, m := range matches {
			g.Matches = append(g.Matches, m)
			if failed != nil {
				continue
			}
			m = filepath.Clean(m)
			info, err := os.Lstat(m)
			if err != nil {
				failed = fmt.Errorf("failed to stat %q: %w", m, err)
				continue
			}
			if !info.Mode().IsRegular() || seen[m] {
				continue
			}
			seen[m] = true
			res.Files = append(res.Files, m)
		}
		res.Globs = append(res.Globs, g)
	}
	slices.Sort(res.Files)
	switch {
	case failed != nil:
		res.Error = failed.Error()
	case len(res.Files) == 0:
		res.Error = "no regular files matched"
	default:
		key, err := digest(res.Files)
		if err != nil {
			res.Error = err.Error()
		} else {
			res.Key = key
		}
	}
	return res
}

func digest(paths []string) (string, error) {
	h := sha256.New()
	for _, p := range paths {
		h.Write([]byte(p))
		h.Write([]byte{0})
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func main() {
	dir := flag.String("C", ".", "directory to run in")
	stdin := flag.Bool("stdin", false, "read a JSON array of pattern arrays from stdin")
	flag.Parse()
	if err := os.Chdir(*dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var cases [][]string
	if *stdin {
		if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
			fmt.Fprintln(os.Stderr, "bad input:", err)
			os.Exit(2)
		}
	} else {
		cases = [][]string{flag.Args()}
	}
	out := make([]caseResult, 0, len(cases))
	for _, c := range cases {
		out = append(out, run(c))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
