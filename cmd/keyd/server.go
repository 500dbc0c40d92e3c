package main

import (
	"fmt"

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
	select {
	case <-c.ctx.Done():
		cfg.Logger.Info("shutting down")
	case <-n.Done():
	}
	return n.Close()
}
