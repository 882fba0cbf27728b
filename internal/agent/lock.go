package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrAgentRunning is returned by Run when another agent serves the same
// replica.
var ErrAgentRunning = errors.New("agent: another agent is already running for this backpack")

// agentLock is the flock on agent/agent.lock that keeps a second agent
// off a replica. The file holds {pid, started_at} of the holder.
type agentLock struct{ f *os.File }

// lockAgent takes the lock, or returns an error wrapping ErrAgentRunning
// that names the holder.
func lockAgent(path string, now time.Time) (*agentLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			var holder struct {
				PID       int       `json:"pid"`
				StartedAt time.Time `json:"started_at"`
			}
			data, _ := os.ReadFile(path)
			json.Unmarshal(data, &holder)
			return nil, fmt.Errorf("%w (pid %d, started %s; lock %s)", ErrAgentRunning, holder.PID, holder.StartedAt.Format(time.RFC3339), path)
		}
		return nil, err
	}
	data, _ := json.Marshal(map[string]any{"pid": os.Getpid(), "started_at": now})
	if err := f.Truncate(0); err == nil {
		f.WriteAt(append(data, '\n'), 0)
	}
	return &agentLock{f}, nil
}

// release drops the lock; the file stays (removing it would race with a
// new agent locking it).
func (l *agentLock) release() error {
	l.f.Truncate(0)
	return l.f.Close()
}
