// Package durable holds the few file-system steps that make a write
// survive a machine crash, shared by the packages that keep state on disk.
package durable

import "os"

// SyncDir fsyncs directory dir, making the creation, rename or removal of
// an entry in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
