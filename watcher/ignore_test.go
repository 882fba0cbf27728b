package watcher_test

import (
	"testing"

	"github.com/backpack-field/backpack/watcher"
)

func TestDefaultIgnore(t *testing.T) {
	tests := []struct {
		name   string
		ignore bool
	}{
		{"bundle.bpk", false},
		{"events.ndjson", false},
		{"report.txt", false},
		{"a~b", false},
		{"#notes", false},
		{"partial", false},
		{"", true},
		{".events.ndjson.tmp-123", true},
		{".syncthing.bundle.bpk.tmp", true},
		{"~syncthing~bundle.bpk.tmp", true},
		{".stfolder", true},
		{".#bundle", true},
		{"#bundle#", true},
		{"bundle~", true},
		{"bundle.tmp", true},
		{"BUNDLE.TMP", true},
		{"bundle.part", true},
		{"bundle.partial", true},
		{"bundle.bpk.3f2a9c1e.partial", true},
		{"bundle.!sync", true},
		{"bundle.crdownload", true},
		{"bundle.filepart", true},
		{"~$sheet.xlsx", true},
	}
	for _, tt := range tests {
		if got := watcher.DefaultIgnore(tt.name); got != tt.ignore {
			t.Errorf("DefaultIgnore(%q) = %v, want %v", tt.name, got, tt.ignore)
		}
	}
}
