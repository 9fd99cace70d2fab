// Command legion-server serves a Legion database over the Redis protocol.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/legiondb/legion/server"
	"github.com/legiondb/legion/store"
)

func main() {
	cfg := server.DefaultConfig()
	fs := flag.NewFlagSet("legion-server", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: legion-server [flags]\n\nServes a Legion database over the Redis protocol (RESP2/RESP3).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Bind, "bind", cfg.Bind, "address the client port listens on")
	fs.IntVar(&cfg.Port, "port", cfg.Port, "client port for the Redis protocol (0 picks a free port)")
	fs.StringVar(&cfg.DB.DataDir, "data-dir", cfg.DB.DataDir, "directory of the node's data (created if missing)")
	fs.BoolVar(&cfg.DB.InMemory, "in-memory", false, "keep all data in memory; nothing survives a restart")
	fsync := fs.String("fsync", "always", "when acknowledged writes reach disk: always (before the reply; concurrent commits share a sync), everysec (at most ~1s lost on power loss) or no (the OS decides)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "legion-server: unexpected argument %q (see --help)\n", fs.Arg(0))
		os.Exit(2)
	}
	mode, err := store.ParseSyncMode(*fsync)
	if err != nil {
		fmt.Fprintf(os.Stderr, "legion-server: --fsync: %v\n", err)
		os.Exit(2)
	}
	cfg.DB.Fsync = mode
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(os.Stderr, "legion-server: --log-level: %v\n", err)
		os.Exit(2)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	if err := server.Run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "legion-server: %v\n", err)
		os.Exit(1)
	}
}
