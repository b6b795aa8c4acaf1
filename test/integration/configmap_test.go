package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// configMapDir lays a policy out as the kubelet mounts a ConfigMap key
// (its AtomicWriter): the data in a timestamped directory, a "..data"
// symlink to it, and the key a symlink through "..data".
type configMapDir struct {
	t       *testing.T
	dir     string
	version int
}

func newConfigMapDir(t *testing.T, parent, policy string) *configMapDir {
	c := &configMapDir{t: t, dir: filepath.Join(parent, "configmap")}
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := c.writeVersion(policy)
	c.must(os.Symlink(filepath.Base(data), filepath.Join(c.dir, "..data")))
	c.must(os.Symlink("..data/policy.yaml", filepath.Join(c.dir, "policy.yaml")))
	return c
}

func (c *configMapDir) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
}

func (c *configMapDir) writeVersion(policy string) string {
	c.version++
	data := filepath.Join(c.dir, fmt.Sprintf("..2026_11_22_17_%02d_00.%d", c.version, 1000+c.version))
	c.must(os.Mkdir(data, 0o755))
	c.must(os.WriteFile(filepath.Join(data, "policy.yaml"), []byte(policy), 0o644)) // defaultMode 0644
	return data
}

// update swaps the ConfigMap's content the way the kubelet does: a new
// timestamped directory, "..data_tmp" pointing at it renamed over "..data"
// (the one atomic step), then the old directory removed.
func (c *configMapDir) update(policy string) {
	old, err := os.Readlink(filepath.Join(c.dir, "..data"))
	c.must(err)
	data := c.writeVersion(policy)
	c.must(os.Symlink(filepath.Base(data), filepath.Join(c.dir, "..data_tmp")))
	c.must(os.Rename(filepath.Join(c.dir, "..data_tmp"), filepath.Join(c.dir, "..data")))
	c.must(os.RemoveAll(filepath.Join(c.dir, old)))
}

func (c *configMapDir) policyPath() string { return filepath.Join(c.dir, "policy.yaml") }

// The DaemonSet's daemon reads its policy from a ConfigMap volume: an
// update of the ConfigMap (the kubelet's symlink swap) is a reload, and a
// bad update is refused with the previous policy kept.
func TestConfigMapSwapReloads(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022, 8080, 7777)
	cm := newConfigMapDir(t, l.dir, "tcp:\n  allow: [8022, 8080]\n")
	d := l.StartDaemon("--policy", cm.policyPath())
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "open", 7777: "filtered"})

	d.Mark()
	cm.update("tcp:\n  allow: [8022, 7777]\n")
	d.WaitLog(`policy reloaded.*trigger="file changed"`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "filtered", 7777: "open"})

	d.Mark()
	cm.update("tcp:\n  allow: [8022, 7777\n") // broken YAML
	d.WaitLog(`policy reload refused`)
	// The swap's one watched step (the rename of ..data) was refused; a
	// later, wrong reload of it (a half-swapped directory) would come
	// within the watcher's 200 ms debounce: give it that time to show,
	// then the previous policy is still the one in force.
	time.Sleep(300 * time.Millisecond)
	if g := Metric(d.Scrape(), "xdpguard_policy_generation"); g != 2 {
		t.Errorf("generation %v after a refused update, want 2", g)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "filtered", 7777: "open"})

	d.Mark()
	cm.update("tcp:\n  allow: [8022, 8080]\n")
	d.WaitLog(`policy reloaded.*trigger="file changed"`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "open", 7777: "filtered"})
}
