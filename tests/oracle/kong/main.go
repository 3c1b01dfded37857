// Command kong-oracle reports, as JSON, what kong v1.15.0 makes of a
// command line and environment for a CLI shaped like the Go cachew CLI
// (block/cachew cmd/cachew: same flag names, types, tags and
// DefaultEnvars("CACHEW")). cachew-rs compares its own parser with it.
//
// Usage: kong-oracle ARGS... (the environment is the process environment).
// Output: {"ok":true,"command":"...","cli":{...}} or
// {"ok":false,"exit":N,"error":"..."}.
//
// Types that open files or talk to a server in the real CLI are plain
// strings here: the oracle is about parsing, not about side effects.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"time"

	"github.com/alecthomas/kong"
)

var namespacePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]*$`)

// Namespace validates like the Go client's namespace type.
type Namespace string

// UnmarshalText rejects names the server would reject.
func (n *Namespace) UnmarshalText(text []byte) error {
	if !namespacePattern.Match(text) {
		return fmt.Errorf("invalid namespace %q: must match %s", text, namespacePattern)
	}
	*n = Namespace(text)
	return nil
}

type logging struct {
	JSON    bool              `json:"json" help:"Enable JSON logging."`
	Level   slog.Level        `json:"level" help:"Set the logging level." default:"info"`
	Remap   map[string]string `json:"remap" help:"Remap field names."`
	Headers map[string]string `json:"headers" help:"Propagate these inbound request headers to the given log attribute."`
}

type getCmd struct {
	Namespace Namespace `json:"namespace" arg:""`
	Key       string    `json:"key" arg:""`
	Output    string    `json:"output" short:"o" default:"-"`
}

type statCmd struct {
	Namespace Namespace `json:"namespace" arg:""`
	Key       string    `json:"key" arg:""`
}

type putCmd struct {
	Namespace Namespace         `json:"namespace" arg:""`
	Key       string            `json:"key" arg:""`
	Input     string            `json:"input" arg:"" optional:"" default:"-"`
	TTL       time.Duration     `json:"ttl"`
	Headers   map[string]string `json:"headers" short:"H"`
}

type deleteCmd struct {
	Namespace Namespace `json:"namespace" arg:""`
	Key       string    `json:"key" arg:""`
}

type namespacesCmd struct{}

type saveCmd struct {
	Namespace   Namespace     `json:"namespace" arg:""`
	Directory   string        `json:"directory" arg:"" type:"path"`
	Paths       []string      `json:"paths" arg:"" optional:""`
	Key         string        `json:"key" xor:"cache-key" required:""`
	HashFiles   []string      `json:"hash_files" short:"H" xor:"cache-key" required:""`
	TTL         time.Duration `json:"ttl"`
	Exclude     []string      `json:"exclude"`
	ZstdThreads int           `json:"zstd_threads" default:"0"`
}

type restoreCmd struct {
	Namespace   Namespace `json:"namespace" arg:""`
	Directory   string    `json:"directory" arg:"" type:"path"`
	Key         string    `json:"key" xor:"cache-key" required:""`
	HashFiles   []string  `json:"hash_files" short:"H" xor:"cache-key" required:""`
	ZstdThreads int       `json:"zstd_threads" default:"0"`
}

type gitRestoreCmd struct {
	RepoURL             string            `json:"repo_url" arg:""`
	Directory           string            `json:"directory" arg:"" type:"path"`
	Ref                 map[string]string `json:"ref"`
	Commit              []string          `json:"commit"`
	NoBundle            bool              `json:"no_bundle"`
	ZstdThreads         int               `json:"zstd_threads" default:"0"`
	DownloadConcurrency int               `json:"download_concurrency" default:"1"`
	DownloadChunkSizeMB int               `json:"download_chunk_size_mb" default:"8"`
}

type gitCmd struct {
	Restore gitRestoreCmd `json:"restore" cmd:""`
}

type cli struct {
	Log logging `json:"log" embed:"" prefix:"log-"`

	URL           string `json:"url" default:"http://127.0.0.1:8080"`
	Authorization string `json:"authorization"`
	Platform      bool   `json:"platform"`
	Daily         bool   `json:"daily" xor:"timeprefix"`
	Hourly        bool   `json:"hourly" xor:"timeprefix"`

	Get        getCmd        `json:"get" cmd:""`
	Stat       statCmd       `json:"stat" cmd:""`
	Put        putCmd        `json:"put" cmd:""`
	Delete     deleteCmd     `json:"delete" cmd:""`
	Namespaces namespacesCmd `json:"namespaces" cmd:""`
	Save       saveCmd       `json:"save" cmd:""`
	Restore    restoreCmd    `json:"restore" cmd:""`
	Git        gitCmd        `json:"git" cmd:""`
}

type result struct {
	OK      bool   `json:"ok"`
	Exit    int    `json:"exit,omitempty"`
	Error   string `json:"error,omitempty"`
	Command string `json:"command,omitempty"`
	CLI     *cli   `json:"cli,omitempty"`
}

func main() {
	var c cli
	parser, err := kong.New(&c, kong.Name("cachew"), kong.DefaultEnvars("CACHEW"),
		kong.Exit(func(int) {}))
	if err != nil {
		panic(err)
	}
	var out result
	ctx, err := parser.Parse(os.Args[1:])
	if err != nil {
		out.Error = err.Error()
		out.Exit = 1
		var coder kong.ExitCoder
		if errors.As(err, &coder) {
			out.Exit = coder.ExitCode()
		}
	} else {
		out.OK = true
		out.Command = ctx.Command()
		out.CLI = &c
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
}
