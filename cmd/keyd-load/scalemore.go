package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
)

// Figures of the scale scenario that compare across key counts: the create
// rate once N keys exist (the issue's "creates per second at 1M keys ≥ 90 %
// of at 1k" compares this line of two runs), listing, and the Raft
// snapshot a lagging follower would install.

// createRate drives fresh creates (names never used before) for d over
// every node and returns the rate with its latencies.
func (sc *scaleCluster) createRate(nkeys int, d time.Duration) result {
	var seq atomic.Int64
	return drive(fmt.Sprintf("create at %d keys", nkeys), sc.o.callers, d, func(w int) error {
		n := sc.nodes[w%len(sc.nodes)]
		body := []byte(`{"name":"rate-` + strconv.FormatInt(seq.Add(1), 10) + `"}`)
		return post(sc.hc, "https://"+n.api+"/v1/keys", sc.token, body, nil)
	})
}

// getJSON is post's GET twin.
func getJSON(hc *http.Client, url, token string, out any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return do(hc, req, token, out)
}

// listing times pages of 1,000 names from one node: the first page, a page
// from the middle of the name space, and a walk of up to walkPages pages
// (1,000 names each) following Next.
func (sc *scaleCluster) listing(nkeys, walkPages int) error {
	n := sc.nodes[0]
	base := "https://" + n.api + "/v1/keys?limit=" + strconv.Itoa(api.MaxListLimit)
	page := func(after string) (*api.KeyList, time.Duration, error) {
		u := base
		if after != "" {
			u += "&after=" + after
		}
		var l api.KeyList
		t0 := time.Now()
		err := getJSON(sc.hc, u, sc.token, &l)
		return &l, time.Since(t0), err
	}
	median := func(after string) (time.Duration, int, error) {
		var ts []time.Duration
		var got int
		for i := 0; i < 21; i++ {
			l, d, err := page(after)
			if err != nil {
				return 0, 0, err
			}
			ts = append(ts, d)
			got = len(l.Keys)
		}
		sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
		return ts[len(ts)/2], got, nil
	}
	first, got1, err := median("")
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	// Names sort as strings: scale-5 is about the middle of scale-0..N.
	mid, got2, err := median("scale-5")
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	t0 := time.Now()
	names, after := 0, ""
	pages := 0
	for ; pages < walkPages; pages++ {
		l, _, err := page(after)
		if err != nil {
			return fmt.Errorf("list walk: %w", err)
		}
		names += len(l.Keys)
		if l.Next == "" {
			pages++
			break
		}
		after = l.Next
	}
	walk := time.Since(t0)
	fmt.Printf("scale keys=%d list page of %d: first page p50=%s (%d names), middle page p50=%s (%d names); walk of %d pages, %d names: %s (%s/page)\n",
		nkeys, api.MaxListLimit, first.Round(time.Microsecond), got1, mid.Round(time.Microsecond), got2,
		pages, names, walk.Round(time.Millisecond), (walk / time.Duration(max(pages, 1))).Round(time.Microsecond))
	return nil
}

// snapshotFigures reports the newest Raft snapshot of n (what the leader
// sends a follower that is too far behind) and times installing it: the
// follower's side of an install is fsm.Restore (verify the checksum and the
// database, then swap it in), measured here on a copy in a scratch
// directory so the cluster is not disturbed. The transfer itself is a
// loopback copy and is not included.
func (sc *scaleCluster) snapshotFigures(nkeys int, n *scaleNode) error {
	dir := filepath.Join(n.dir, "data", "raft", "snapshots")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var newest string
	for _, e := range ents {
		// A snapshot being written is name.tmp until it is complete.
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") && e.Name() > newest {
			newest = e.Name()
		}
	}
	if newest == "" {
		return errors.New("no Raft snapshot yet")
	}
	path := filepath.Join(dir, newest, "state.bin")
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "keyd-scale-restore-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	f, err := fsm.Open(filepath.Join(scratch, "state.db"), nil)
	if err != nil {
		return err
	}
	defer f.Close()
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := f.Restore(src); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	took := time.Since(t0)
	fmt.Printf("scale keys=%d Raft snapshot %s: %.1f MB (%.0f B/key); install (fsm.Restore: verify + swap) %s\n",
		nkeys, newest, float64(fi.Size())/(1<<20), float64(fi.Size())/float64(nkeys), took.Round(time.Millisecond))
	return nil
}
