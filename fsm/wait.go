package fsm

import "sync"

// waitIndex releases waiters when an index is applied, in the style of
// etcd's WaitTime: waiters get a channel closed once the applied index
// reaches theirs.
type waitIndex struct {
	mu      sync.Mutex
	last    uint64
	closed  bool
	waiters map[uint64][]chan struct{}
}

func (w *waitIndex) init() { w.waiters = make(map[uint64][]chan struct{}) }

// wait returns a channel closed when index is triggered or the waiter set
// is closed.
func (w *waitIndex) wait(index uint64) <-chan struct{} {
	ch := make(chan struct{})
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || index <= w.last {
		close(ch)
		return ch
	}
	w.waiters[index] = append(w.waiters[index], ch)
	return ch
}

func (w *waitIndex) trigger(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if index > w.last {
		w.last = index
	}
	for i, chs := range w.waiters {
		if i <= index {
			for _, ch := range chs {
				close(ch)
			}
			delete(w.waiters, i)
		}
	}
}

func (w *waitIndex) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for i, chs := range w.waiters {
		for _, ch := range chs {
			close(ch)
		}
		delete(w.waiters, i)
	}
}
