package watcher

import "github.com/fsnotify/fsnotify"

// InjectError hands err to Run as if fsnotify had reported it; it waits
// until Run takes it.
func InjectError(w *Watcher, err error) { w.inject <- err }

// DropEvents makes Run ignore the fsnotify events whose path drop returns
// true for, as if the kernel had lost them. Call it before Run.
func DropEvents(w *Watcher, drop func(path string) bool) {
	w.dropEvent = func(ev fsnotify.Event) bool { return drop(ev.Name) }
}

// FailWatch makes adding an inotify watch fail with fail's error. Call it
// before Run.
func FailWatch(w *Watcher, fail func(dir string) error) { w.failWatch = fail }

var Classify = classify
