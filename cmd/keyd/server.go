package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/keyd/keyd/node"
	"github.com/keyd/keyd/transport"
)

// server runs one node from a YAML config file until SIGINT or SIGTERM.
// Logs are JSON on stderr.
func (c *cli) server(args []string) error {
	fs := c.flags("server", "-config FILE")
	path := fs.String("config", "", "YAML config file (see keyd.example.yaml)")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *path == "" {
		fs.Usage()
		return usagef("server: -config is required")
	}
	fc, err := loadConfigFile(*path)
	if err != nil {
		return err
	}
	cfg, err := fc.nodeConfig(transport.LoadIdentity, c.stderr)
	if err != nil {
		return fmt.Errorf("%s: %w", *path, err)
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	if err := n.Start(c.ctx); err != nil {
		_ = n.Close()
		return err
	}
	// SIGHUP reopens the audit file, for logrotate users (keyd's own
	// rotation, audit_rotate_*, needs no signal).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-c.ctx.Done():
			cfg.Logger.Info("shutting down")
			return n.Close()
		case <-n.Done():
			return n.Close()
		case <-hup:
			if err := n.ReopenAudit(); err != nil {
				cfg.Logger.Error("audit log reopen failed; key operations stay refused until the file is back", "err", err)
			} else {
				cfg.Logger.Info("audit log reopened")
			}
		}
	}
}
