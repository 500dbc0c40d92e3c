// Package drill runs keyd's fault drills against any cluster: an
// in-process one (internal/testcluster, see package chaos) or real
// containers (chaos/compose). A drill is a bounded client workload through
// the Go client, one fault scenario injected through the Cluster
// interface, a recorded history, and checks over that history once the
// fault has healed:
//
//   - every acknowledged ciphertext and data key decrypts to its plaintext;
//   - no acknowledged write is lost (created keys exist, every acknowledged
//     rotation's version exists);
//   - none is applied twice (a key's version count lies between its
//     acknowledged rotations and those plus the unknown outcomes);
//   - the key-metadata history (create, rotate, consistent read) is
//     linearizable, checked with porcupine;
//   - at most one leader per Raft term, sampled from every node's status;
//   - the minority side of a partition applied nothing while cut off.
//
// The result is a Report, printed as a table and written as JSON.
//
// Decisions: an operation whose call failed for any reason other than a
// definite answer from the cluster (not found, exists) has an unknown
// outcome: it may have been applied. Porcupine sees it as pending (no
// output, returning after every other operation), as it expects. Reads
// are consistent reads (?consistent=true); a failed read had no effect
// and is left out of the history.
package drill

import (
	"context"
	"time"
)

// NodeRef names one node of the target.
type NodeRef struct {
	ID      string
	Region  string
	APIAddr string // host:port of the node's HTTPS API
}

// Cluster is what a drill needs from its target. Node arguments are
// NodeRef.ID values. The in-process target implements it with
// internal/testcluster and the fault-injecting transport; the compose
// target with docker commands.
type Cluster interface {
	// Nodes returns the current nodes, running or not.
	Nodes() []NodeRef
	// Kill stops a node abruptly (SIGKILL), keeping its data.
	Kill(ctx context.Context, id string) error
	// Restart starts a killed node again on its data; it warm-rejoins.
	Restart(ctx context.Context, id string) error
	// Freeze makes a node unresponsive to its peers without stopping it
	// (SIGSTOP); Thaw resumes it (SIGCONT).
	Freeze(ctx context.Context, id string) error
	Thaw(ctx context.Context, id string) error
	// Partition cuts the cluster into groups of node ids; nodes in
	// different groups cannot talk. Heal removes every partition.
	Partition(ctx context.Context, groups [][]string) error
	Heal(ctx context.Context) error
}

// HSMFaulter is implemented by targets that can degrade one node's HSM.
type HSMFaulter interface {
	// SetHSMFault makes every HSM call of node id wait delay and then,
	// when fail is set, fail. A zero delay and !fail heal it.
	SetHSMFault(ctx context.Context, id string, delay time.Duration, fail bool) error
}

// Scaler is implemented by targets that can add and remove nodes.
type Scaler interface {
	// AddNode starts a new node in region that joins the cluster.
	AddNode(ctx context.Context, region string) (NodeRef, error)
	// RemoveNode removes the node from the cluster and stops it.
	RemoveNode(ctx context.Context, id string) error
}

// ClockJumper is implemented by targets that can move one node's clock.
type ClockJumper interface {
	// JumpClock moves node id's wall clock by d (negative: backwards);
	// 0 restores it.
	JumpClock(ctx context.Context, id string, d time.Duration) error
}

// Env is what a scenario runs with: the target, a client, the custodian
// shares and the drill's recorder for fault annotations.
type Env struct {
	Cluster Cluster
	Config  Config
	run     *runner
}

// Note records a fault event in the report's timeline.
func (e *Env) Note(format string, args ...any) { e.run.note(format, args...) }

// MinorityStart declares that ids form the minority side of a partition
// from now on; MinorityEnd (called before the heal) checks that none of
// them applied an entry in between (after Config.ApplyGrace).
func (e *Env) MinorityStart(ctx context.Context, ids []string) { e.run.minorityStart(ctx, ids) }

// MinorityEnd ends the minority window opened by MinorityStart.
func (e *Env) MinorityEnd(ctx context.Context) { e.run.minorityEnd(ctx) }

// Sleep waits d or until ctx ends.
func (e *Env) Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
