package anomaly

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watch reloads the rule file when it changes, until ctx ends. It watches
// the file's directory, not the file: editors and Kubernetes ConfigMaps
// replace files by renaming, which a watch on the file itself would lose.
// Bursts of changes are coalesced into one reload.
func (p *Processor) watch(ctx context.Context) error {
	if p.cfg.RulesFile == "" || p.cfg.DisableWatch {
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("anomaly: watch rules: %w", err)
	}
	defer w.Close()
	dir := filepath.Dir(p.cfg.RulesFile)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("anomaly: watch rules directory %s: %w", dir, err)
	}
	close(p.watching)
	const settle = 200 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) {
				continue
			}
			timer.Reset(settle)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			p.log.Warn("watching the rule file", "err", err)
		case <-timer.C:
			_ = p.Reload() // a refused file is logged and counted by Reload
		}
	}
}
