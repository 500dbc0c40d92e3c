package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/keyd/keyd/node"
)

// The bare raft reference: three hashicorp/raft nodes in this process with
// keyd's log store (raft-boltdb over bbolt with keyd's options, fsync per
// append, the same in-memory cache of recent entries), snapshot
// store, LAN timing and command size, but plain TCP instead of mutual TLS
// and an FSM that only counts. It is what a key create costs at the least
// (one replicated, fsynced log entry), measured in the same run as keyd's
// create so that the ratio is meaningful on a shared machine.

type countFSM struct{ n uint64 }

func (f *countFSM) Apply(*raft.Log) interface{}         { f.n++; return nil }
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnap{}, nil }
func (f *countFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type countSnap struct{}

func (countSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (countSnap) Release()                          {}

// rawRaftCluster starts three bare raft nodes and returns the leader and a
// stop function.
func rawRaftCluster() (*raft.Raft, func(), error) {
	var rafts []*raft.Raft
	var closers []func()
	stop := func() {
		for _, r := range rafts {
			_ = r.Shutdown().Error()
		}
		for _, c := range closers {
			c()
		}
	}
	var servers []raft.Server
	var trans []*raft.NetworkTransport
	for i := 0; i < 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, stop, err
		}
		addr := ln.Addr().(*net.TCPAddr)
		ln.Close()
		t, err := raft.NewTCPTransport(addr.String(), addr, 4, 10*time.Second, io.Discard)
		if err != nil {
			return nil, stop, err
		}
		trans = append(trans, t)
		closers = append(closers, func() { _ = t.Close() })
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("r%d", i)), Address: t.LocalAddr(), Suffrage: raft.Voter})
	}
	for i := 0; i < 3; i++ {
		dir, err := os.MkdirTemp("", "keyd-rawraft-")
		if err != nil {
			return nil, stop, err
		}
		closers = append(closers, func() { _ = os.RemoveAll(dir) })
		logs, err := raftboltdb.New(node.RaftLogStoreOptions(filepath.Join(dir, "raft.db")))
		if err != nil {
			return nil, stop, err
		}
		closers = append(closers, func() { _ = logs.Close() })
		snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
		if err != nil {
			return nil, stop, err
		}
		rc := raft.DefaultConfig()
		rc.LocalID = servers[i].ID
		rc.HeartbeatTimeout = node.TimingLAN.Heartbeat
		rc.ElectionTimeout = node.TimingLAN.Election
		rc.LeaderLeaseTimeout = node.TimingLAN.LeaderLease
		rc.CommitTimeout = node.TimingLAN.Commit
		rc.LogOutput = io.Discard
		cached, err := raft.NewLogCache(node.RaftLogCacheSize, logs)
		if err != nil {
			return nil, stop, err
		}
		r, err := raft.NewRaft(rc, &countFSM{}, cached, logs, snaps, trans[i])
		if err != nil {
			return nil, stop, err
		}
		rafts = append(rafts, r)
		if i == 0 {
			if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
				return nil, stop, err
			}
		}
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, r := range rafts {
			if r.State() == raft.Leader {
				return r, stop, nil
			}
		}
	}
	return nil, stop, fmt.Errorf("bare raft: no leader")
}

// rawRaftApply drives applies of cmdSize-byte commands on the leader.
func rawRaftApply(leader *raft.Raft, callers int, d time.Duration, cmdSize int) result {
	return drive("bare raft apply (3 nodes)", callers, d, func(int) error {
		b := make([]byte, cmdSize)
		_, _ = rand.Read(b)
		return leader.Apply(b, 10*time.Second).Error()
	})
}
