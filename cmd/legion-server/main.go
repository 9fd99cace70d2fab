// Command legion-server serves a Legion database over the Redis protocol.
// Its settings come from flags, LEGION_* environment variables and an
// optional TOML file; see legion-server --help.
package main

import (
	"fmt"
	"os"

	"github.com/legiondb/legion"
	"github.com/legiondb/legion/server"
)

func main() {
	cfg, action, err := server.ParseArgs(os.Args[1:], os.LookupEnv, os.Stdout)
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "legion-server: %v\n", err)
		os.Exit(2)
	case action == server.ActionHelp:
		return
	case action == server.ActionVersion:
		fmt.Printf("legion-server %s\n", legion.Version)
		return
	}
	if err := server.Run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "legion-server: %v\n", err)
		os.Exit(1)
	}
}
