package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/audit"
	"github.com/keyd/keyd/client"
)

const auditHelp = `Usage: keyd audit <subcommand> [flags]

  fetch -addr NODE -out FILE
                          download the audit log of the node at API address
                          NODE to FILE, after its anchors (as another node
                          holds them) to FILE.anchors; needs audit-read.
  anchors -addr NODE [-node ID] -out FILE
                          export node ID's audit public key and the chain
                          heads it committed through Raft (its anchors), as
                          the node at NODE holds them. Ask a node OTHER than
                          the one being audited: every node holds every
                          node's anchors, and a node whose disk was tampered
                          with can serve tampered anchors of its own.
  verify [-anchors FILE | -addr NODE [-node ID]] [-strict] LOGFILE...
                          check a log (the live file and rotated files, in
                          any order; .gz is read as gzip) against the
                          cluster's anchors and audit key: the hash chain,
                          seq order, every checkpoint signature, that every
                          anchored head is in the log and that the log
                          reaches the last anchor.

Take the anchors before copying a running node's log (keyd audit fetch does):
anchors taken later may reach past the copy's end, which verify must report
as a cut log. verify -addr fetches them now: use it for logs of stopped nodes.

verify prints "OK: ..." and exits 0, or "TAMPERED: FILE line L (seq S): reason",
naming the first line that may be bad, and exits 1. Records after the last
anchor are reported as "UNANCHORED: ...": nothing proves they are complete
or unedited; with -strict they make verify exit 1.
`

// maxAnchorFile bounds an -anchors file.
const maxAnchorFile = 1 << 30

// errAuditTampered is returned after a TAMPERED line is printed.
var errAuditTampered = errors.New("audit log failed verification")

// errAuditUnanchored is returned with -strict when records follow the
// last anchor.
var errAuditUnanchored = errors.New("audit log has unanchored records")

func (c *cli) audit(args []string) error {
	return c.dispatch("audit", auditHelp, map[string]func([]string) error{
		"verify":  c.auditVerify,
		"fetch":   c.auditFetch,
		"anchors": c.auditAnchors,
	}, args)
}

// auditVerify checks log files against the cluster's anchors, from an
// exported file (offline) or fetched from a node.
func (c *cli) auditVerify(args []string) error {
	fs := c.flags("audit verify", "[-anchors FILE | -addr NODE [-node ID]] [-strict] LOGFILE...")
	anchorFile := fs.String("anchors", "", "anchors exported by `keyd audit anchors`")
	addr := fs.String("addr", "", "fetch the anchors from the node at this API address (not the audited node); needs audit-read")
	nodeID := fs.String("node", "", "with -addr: the audited node's id (default: the node named in the log)")
	strict := fs.Bool("strict", false, "exit 1 when records follow the last anchor")
	files, err := parseArgs(fs, args, -1)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		fs.Usage()
		return usagef("audit verify: name at least one log file")
	}
	if (*anchorFile == "") == (*addr == "") {
		return usagef("audit verify: give exactly one of -anchors FILE and -addr NODE")
	}
	logs, err := openAuditFiles(files)
	if err != nil {
		return err
	}
	defer func() {
		for _, l := range logs {
			l.close()
		}
	}()
	logNode := ""
	for _, l := range logs {
		if l.node != "" {
			logNode = l.node
			break
		}
	}
	var anchors *api.AuditAnchors
	if *anchorFile != "" {
		if anchors, err = readAnchorFile(*anchorFile); err != nil {
			return err
		}
	} else {
		id := *nodeID
		if id == "" {
			id = logNode
		}
		if id == "" {
			return usagef("audit verify: the log names no node; give -node ID")
		}
		cl, err := c.newClient(&clientFlags{addr: *addr})
		if err != nil {
			return err
		}
		anchors, err = cl.AuditAnchors(c.ctx, *addr, id)
		cl.Close()
		if err != nil {
			return err
		}
	}
	w := &errWriter{w: c.stdout}
	if logNode != "" && anchors.Node != logNode {
		w.printf("TAMPERED: %s line 1: the log is node %s's, the anchors are node %s's\n", logs[0].name, logNode, anchors.Node)
		return errors.Join(errAuditTampered, w.err)
	}
	var pub []byte
	if anchors.PublicKey != "" {
		if pub, err = audit.ParsePublicKey([]byte(anchors.PublicKey)); err != nil {
			return fmt.Errorf("audit verify: the anchors carry an unusable public key: %w", err)
		}
	}
	as := make([]audit.Anchor, 0, len(anchors.Anchors))
	for _, a := range anchors.Anchors {
		as = append(as, audit.Anchor{Seq: a.Seq, Head: a.Head})
	}
	v, err := audit.NewVerifier(pub, as)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	rep, err := verifyAuditFiles(v, logs)
	var ve *audit.VerifyError
	if errors.As(err, &ve) {
		w.printf("TAMPERED: %s line %d (seq %d): %s\n", ve.File, ve.Line, ve.Seq, ve.Reason)
		return errors.Join(errAuditTampered, w.err)
	}
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	if rep.LastAnchor > 0 {
		w.printf("OK: %d records, %d checkpoints, seq %d..%d anchored (%d anchors matched, the last at seq %d)\n",
			rep.Records, rep.Checkpoints, rep.FirstSeq, rep.LastAnchor, rep.Anchors, rep.LastAnchor)
	} else {
		w.printf("NOTHING ANCHORED: %d records, %d checkpoints, last seq %d; no anchor of node %s falls in these files\n",
			rep.Records, rep.Checkpoints, rep.LastSeq, anchors.Node)
	}
	if rep.Unanchored > 0 {
		w.printf("UNANCHORED: %d lines after seq %d (seq %d..%d) follow the last anchor: nothing proves they are complete or unedited\n",
			rep.Unanchored, rep.LastAnchor, rep.LastSeq-rep.Unanchored+1, rep.LastSeq)
	}
	if rep.AnchorsBefore > 0 {
		fmt.Fprintf(c.stderr, "note: %d anchors fall before seq %d, in files not given\n", rep.AnchorsBefore, rep.FirstSeq)
	}
	if w.err != nil {
		return w.err
	}
	if *strict && (rep.Unanchored > 0 || rep.LastAnchor == 0) {
		return errAuditUnanchored
	}
	return nil
}

// auditLogFile is one log file given to verify.
type auditLogFile struct {
	name     string
	f        *os.File
	r        io.Reader
	firstSeq uint64 // 0: empty
	node     string
}

func (l *auditLogFile) close() { _ = l.f.Close() }

// openAuditFiles opens every file (gunzipping .gz), reads each first
// line's seq and node, and returns them in chain order.
func openAuditFiles(names []string) ([]*auditLogFile, error) {
	var out []*auditLogFile
	fail := func(err error) ([]*auditLogFile, error) {
		for _, l := range out {
			l.close()
		}
		return nil, err
	}
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			return fail(err)
		}
		l := &auditLogFile{name: name, f: f, r: f}
		out = append(out, l)
		if strings.HasSuffix(name, ".gz") {
			zr, err := gzip.NewReader(f)
			if err != nil {
				return fail(fmt.Errorf("%s: %w", name, err))
			}
			l.r = zr
		}
		br := bufio.NewReaderSize(l.r, 64<<10)
		first, _ := br.Peek(64 << 10)
		if i := bytes.IndexByte(first, '\n'); i >= 0 {
			first = first[:i]
		}
		var head struct {
			Seq  uint64 `json:"seq"`
			Node string `json:"node"`
		}
		if json.Unmarshal(first, &head) == nil {
			l.firstSeq, l.node = head.Seq, head.Node
		}
		l.r = br
	}
	// Empty files (a live file just after rotation) sort last.
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].firstSeq, out[j].firstSeq
		if a == 0 || b == 0 {
			return b == 0 && a != 0
		}
		return a < b
	})
	return out, nil
}

func verifyAuditFiles(v *audit.Verifier, logs []*auditLogFile) (*audit.Report, error) {
	for _, l := range logs {
		if err := v.Add(l.name, l.r); err != nil {
			return nil, err
		}
	}
	return v.Finish()
}

func readAnchorFile(name string) (*api.AuditAnchors, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var a api.AuditAnchors
	d := json.NewDecoder(io.LimitReader(f, maxAnchorFile))
	d.DisallowUnknownFields()
	if err := d.Decode(&a); err != nil {
		return nil, fmt.Errorf("-anchors file %s: %w", name, err)
	}
	if a.Node == "" {
		return nil, fmt.Errorf("-anchors file %s names no node", name)
	}
	return &a, nil
}

// auditAnchors exports a node's key and anchors for offline verify.
func (c *cli) auditAnchors(args []string) error {
	fs := c.flags("audit anchors", "-addr NODE [-node ID] -out FILE")
	addr := fs.String("addr", "", "API address of the node to ask (not the audited node) (required)")
	nodeID := fs.String("node", "", "the audited node's id (default: the node at -addr)")
	out := fs.String("out", "", "file to write the anchors to (required)")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *addr == "" || *out == "" {
		fs.Usage()
		return usagef("audit anchors: -addr and -out are required")
	}
	cl, err := c.newClient(&clientFlags{addr: *addr})
	if err != nil {
		return err
	}
	defer cl.Close()
	a, err := cl.AuditAnchors(c.ctx, *addr, *nodeID)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("audit anchors: %w", err)
	}
	w := &errWriter{w: c.stdout}
	last := uint64(0)
	if len(a.Anchors) > 0 {
		last = a.Anchors[len(a.Anchors)-1].Seq
	}
	w.printf("Wrote %d anchors of node %s (last at seq %d) to %s\n", len(a.Anchors), a.Node, last, *out)
	return w.err
}

// auditFetch downloads one node's audit log, and first that node's
// anchors from another node: anchors fetched after the log could be
// ahead of it and read as a cut log. The log goes to a temporary file
// renamed into place only when the download is complete, so FILE is never
// a silently truncated copy. The node appends while it streams; a final
// line without its newline is such an append in flight and is cut.
func (c *cli) auditFetch(args []string) error {
	fs := c.flags("audit fetch", "-addr NODE -out FILE [-anchors-from OTHER]")
	addr := fs.String("addr", "", "API address (host:port) of the node whose log to fetch (required)")
	out := fs.String("out", "", "file to write the log to; the anchors go to FILE.anchors (required)")
	from := fs.String("anchors-from", "", "API address of another node to take the anchors from (default: the first other address in $"+envAddr+")")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *addr == "" || *out == "" {
		fs.Usage()
		return usagef("audit fetch: -addr and -out are required")
	}
	if *from == "" {
		for _, a := range splitAddrs(c.getenv(envAddr)) {
			if a != *addr {
				*from = a
				break
			}
		}
	}
	cl, err := c.newClient(&clientFlags{addr: *addr})
	if err != nil {
		return err
	}
	defer cl.Close()
	w := &errWriter{w: c.stdout}
	if *from != "" && *from != *addr {
		key, err := cl.AuditPublicKey(c.ctx, *addr)
		if err != nil {
			return err
		}
		a, err := cl.AuditAnchors(c.ctx, *from, key.Node)
		if err != nil {
			return fmt.Errorf("audit fetch: anchors from %s: %w", *from, err)
		}
		b, err := json.MarshalIndent(a, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*out+".anchors", append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("audit fetch: %w", err)
		}
		w.printf("Fetched %d anchors of node %s from %s to %s.anchors\n", len(a.Anchors), a.Node, *from, *out)
	} else {
		fmt.Fprintf(c.stderr, "note: no other node to take the anchors from; fetch them first with keyd audit anchors\n")
	}
	n, cut, err := c.fetchAuditLog(cl, *addr, *out)
	if err != nil {
		return err
	}
	if cut > 0 {
		fmt.Fprintf(c.stderr, "note: dropped a final line of %d bytes the node was still writing\n", cut)
	}
	w.printf("Fetched %d bytes of the audit log of %s to %s\n", n, *addr, *out)
	if *from != "" && *from != *addr {
		w.printf("Verify with: keyd audit verify -anchors %s.anchors %s\n", *out, *out)
	}
	return w.err
}

// fetchAuditLog streams the log into a temporary file next to path, cuts
// a trailing partial line, and renames it to path. It returns the bytes
// kept and the bytes cut.
func (c *cli) fetchAuditLog(cl *client.Client, addr, path string) (kept, cut int64, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".part-*")
	if err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	// The log names identities and keys: owner-only, like the node's copy.
	if err := f.Chmod(0o600); err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	if err := cl.AuditLog(c.ctx, addr, f); err != nil {
		return 0, 0, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	kept, err = lastNewline(f, size)
	if err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	if kept < size {
		if err := f.Truncate(kept); err != nil {
			return 0, 0, fmt.Errorf("audit fetch: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	return kept, size - kept, nil
}

// lastNewline returns the length of f's first size bytes up to and
// including their last newline (0 when there is none), reading backwards
// in blocks so a large log is not read twice.
func lastNewline(f io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, 4096)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}
