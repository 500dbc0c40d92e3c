package audit

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/keyd/keyd/internal/durable"
)

// RotatedName is the name a closed log file gets: path.<seq of its last
// line, 20 digits>, so names sort in chain order. Compressed, it ends in
// ".gz".
func RotatedName(path string, lastSeq uint64) string {
	return fmt.Sprintf("%s.%020d", path, lastSeq)
}

// RotatedFiles lists the closed files of the log at path (compressed or
// not), oldest first.
func RotatedFiles(path string) ([]string, error) {
	matches, err := filepath.Glob(path + ".*")
	if err != nil {
		return nil, err
	}
	var out []string
	base := filepath.Base(path) + "."
	for _, m := range matches {
		rest := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), base), ".gz")
		if len(rest) == 20 && strings.Trim(rest, "0123456789") == "" {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out, nil
}

// compressAndPrune gzips a closed file (writing name.gz, then removing
// name) and deletes the oldest closed files beyond keep. Failures leave
// the uncompressed file in place: nothing is lost.
func compressAndPrune(path, name string, keep int) {
	if err := gzipFile(name); err == nil {
		_ = os.Remove(name)
	}
	if keep <= 0 {
		return
	}
	files, err := RotatedFiles(path)
	if err != nil {
		return
	}
	seen := map[string]bool{}
	var uniq []string // one entry per closed file, even mid-compression
	for _, f := range files {
		k := strings.TrimSuffix(f, ".gz")
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	for len(uniq) > keep {
		_ = os.Remove(uniq[0])
		_ = os.Remove(uniq[0] + ".gz")
		uniq = uniq[1:]
	}
}

func gzipFile(name string) (err error) {
	in, err := os.Open(name)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := name + ".gz.tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	zw := gzip.NewWriter(out)
	if _, err = io.Copy(zw, in); err != nil {
		return err
	}
	if err = zw.Close(); err != nil {
		return err
	}
	if err = out.Sync(); err != nil {
		return err
	}
	if err = out.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, name+".gz"); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(name))
}
