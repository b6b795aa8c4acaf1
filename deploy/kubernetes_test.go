package deploy

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/xdpguard/xdpguard/pkg/history"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// kustomization is the part of a kustomization.yaml the base uses; decoded
// strictly, so a typo in a field fails the test.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name     string   `json:"name"`
		Files    []string `json:"files"`
		Literals []string `json:"literals"`
		Options  struct {
			DisableNameSuffixHash bool `json:"disableNameSuffixHash"`
		} `json:"options"`
	} `json:"configMapGenerator"`
	Images []struct {
		Name   string `json:"name"`
		NewTag string `json:"newTag"`
		Digest string `json:"digest"`
	} `json:"images"`
}

// decodeStrict reads YAML into out: duplicate keys and fields the type does
// not have are errors.
func decodeStrict(path string, out any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// cluster is the base as the API server would receive it.
type cluster struct {
	k          kustomization
	namespace  *corev1.Namespace
	daemonSet  *appsv1.DaemonSet
	podMonitor *monitoringv1.PodMonitor
	configMaps map[string]*corev1.ConfigMap // what configMapGenerator makes
}

func loadBase(t *testing.T) *cluster {
	t.Helper()
	const dir = "kubernetes"
	c := &cluster{configMaps: map[string]*corev1.ConfigMap{}}
	if err := decodeStrict(filepath.Join(dir, "kustomization.yaml"), &c.k); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{"kustomization.yaml": true}
	for _, r := range c.k.Resources {
		listed[r] = true
		var meta struct{ APIVersion, Kind string }
		raw, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, &meta); err != nil {
			t.Fatal(err)
		}
		var obj any
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 Namespace":
			c.namespace = &corev1.Namespace{}
			obj = c.namespace
		case "apps/v1 DaemonSet":
			c.daemonSet = &appsv1.DaemonSet{}
			obj = c.daemonSet
		case "monitoring.coreos.com/v1 PodMonitor":
			c.podMonitor = &monitoringv1.PodMonitor{}
			obj = c.podMonitor
		default:
			t.Fatalf("%s: unexpected %s %s", r, meta.APIVersion, meta.Kind)
		}
		if err := decodeStrict(filepath.Join(dir, r), obj); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range c.k.ConfigMapGenerator {
		cm := &corev1.ConfigMap{Data: map[string]string{}}
		cm.Name = g.Name
		for _, f := range g.Files {
			listed[f] = true
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			cm.Data[f] = string(b)
		}
		for _, l := range g.Literals {
			k, v, _ := strings.Cut(l, "=")
			cm.Data[k] = v
		}
		if !g.Options.DisableNameSuffixHash {
			t.Errorf("ConfigMap %s gets a hash suffix: a change would restart every pod instead of reloading", g.Name)
		}
		c.configMaps[g.Name] = cm
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if !listed[f.Name()] {
			t.Errorf("%s/%s is not part of the kustomization", dir, f.Name())
		}
	}
	if c.namespace == nil || c.daemonSet == nil || c.podMonitor == nil {
		t.Fatalf("the base lacks a namespace, DaemonSet or PodMonitor: %v", c.k.Resources)
	}
	return c
}

// Every manifest decodes strictly into the Kubernetes API types, and the
// DaemonSet is what the issue asks: host network, only the capabilities
// needed and not privileged, the host's bpffs (pins outlive the pod), the
// policy from a ConfigMap, readiness meaning attached, node selection by
// label, a rolling update that keeps every node filtered, and a PodMonitor
// that finds the metrics.
func TestKubernetesManifests(t *testing.T) {
	c := loadBase(t)
	ds := c.daemonSet
	pod := ds.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	ctr := pod.Containers[0]
	if !pod.HostNetwork {
		t.Error("not on the host network: XDP would attach to the pod's veth, not the node's interfaces")
	}
	sc := ctr.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	var add []string
	for _, c := range sc.Capabilities.Add {
		add = append(add, string(c))
	}
	slices.Sort(add)
	if !slices.Equal(add, []string{"BPF", "NET_ADMIN", "PERFMON"}) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities: add %v drop %v; want add BPF NET_ADMIN PERFMON, drop ALL", add, sc.Capabilities.Drop)
	}

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.Name] = m
	}
	var bpffs, state, policyVol *corev1.Volume
	for i, v := range pod.Volumes {
		switch {
		case v.HostPath != nil && v.HostPath.Path == filepath.Dir(history.DefaultPath):
			state = &pod.Volumes[i]
		case v.HostPath != nil:
			if bpffs != nil {
				t.Errorf("a second hostPath volume, %s: the pod needs only xdpguard's directory of the bpffs and its state directory", v.HostPath.Path)
			}
			bpffs = &pod.Volumes[i]
		case v.ConfigMap != nil:
			policyVol = &pod.Volumes[i]
		}
	}
	// Only xdpguard's directory of the host's bpffs, created if missing,
	// mounted where the daemon looks for its bpffs: the pins outlive the
	// pod, and other programs' pins are out of its reach.
	bpffsFlag := loader.DefaultBPFFS
	for _, a := range ctr.Args {
		if p, ok := strings.CutPrefix(a, "--bpffs="); ok {
			bpffsFlag = p
		}
	}
	switch {
	case bpffs == nil:
		t.Error("no hostPath for the host's bpffs: the filter would die with the pod")
	case bpffs.HostPath.Path != "/sys/fs/bpf/xdpguard":
		t.Errorf("hostPath %s, want only xdpguard's directory /sys/fs/bpf/xdpguard", bpffs.HostPath.Path)
	case bpffs.HostPath.Type == nil || *bpffs.HostPath.Type != corev1.HostPathDirectoryOrCreate:
		t.Errorf("hostPath type %v, want DirectoryOrCreate (the directory is missing on a fresh node)", bpffs.HostPath.Type)
	case mounts[bpffs.Name].MountPath != bpffsFlag || mounts[bpffs.Name].ReadOnly:
		t.Errorf("the bpffs directory is mounted at %s (read-only %v), the daemon pins under --bpffs %s", mounts[bpffs.Name].MountPath, mounts[bpffs.Name].ReadOnly, bpffsFlag)
	}
	// The change history (--audit-log's default) is on the node, writable
	// under readOnlyRootFilesystem, and outlives the pod.
	switch {
	case state == nil:
		t.Errorf("no hostPath for %s: under readOnlyRootFilesystem the daemon cannot write its change history", filepath.Dir(history.DefaultPath))
	case state.HostPath.Type == nil || *state.HostPath.Type != corev1.HostPathDirectoryOrCreate:
		t.Errorf("the state hostPath's type %v, want DirectoryOrCreate", state.HostPath.Type)
	case mounts[state.Name].MountPath != filepath.Dir(history.DefaultPath) || mounts[state.Name].ReadOnly:
		t.Errorf("the state directory is mounted at %s (read-only %v), want %s writable", mounts[state.Name].MountPath, mounts[state.Name].ReadOnly, filepath.Dir(history.DefaultPath))
	}
	for _, a := range ctr.Args {
		if strings.HasPrefix(a, "--audit-log") {
			t.Errorf("%s: the DaemonSet keeps the history at the default, in its state hostPath", a)
		}
	}
	args := strings.Join(ctr.Args, " ")
	if policyVol == nil || c.configMaps[policyVol.ConfigMap.Name] == nil {
		t.Fatal("the policy volume is not the generated ConfigMap")
	}
	policyDir := mounts[policyVol.Name].MountPath
	var policyFile string
	for _, a := range ctr.Args {
		if p, ok := strings.CutPrefix(a, "--policy="); ok {
			policyFile = p
		}
	}
	if filepath.Dir(policyFile) != policyDir {
		t.Errorf("--policy=%s is not in the ConfigMap mount %s", policyFile, policyDir)
	}
	// The ConfigMap's key must be a policy xdpguard accepts.
	text, ok := c.configMaps[policyVol.ConfigMap.Name].Data[filepath.Base(policyFile)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", policyVol.ConfigMap.Name, filepath.Base(policyFile))
	}
	if _, err := policy.Parse("policy.yaml", []byte(text)); err != nil {
		t.Errorf("the ConfigMap's policy: %v", err)
	}
	// The interface list comes from the generated config.
	for _, e := range ctr.Env {
		if e.Name == "XDPGUARD_IFACES" {
			ref := e.ValueFrom.ConfigMapKeyRef
			if ref == nil || c.configMaps[ref.Name] == nil || c.configMaps[ref.Name].Data[ref.Key] == "" {
				t.Errorf("XDPGUARD_IFACES refers to nothing generated: %+v", e.ValueFrom)
			}
		}
	}
	if !strings.Contains(args, "--iface=$(XDPGUARD_IFACES)") {
		t.Errorf("args do not take the interfaces from XDPGUARD_IFACES: %s", args)
	}

	rp := ctr.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" {
		t.Error("no readiness probe on /readyz (attached and policy loaded)")
	} else if port := rp.HTTPGet.Port.String(); port != "metrics" {
		t.Errorf("readiness probe on port %s", port)
	}
	if len(pod.NodeSelector) == 0 {
		t.Error("no nodeSelector: every node would run it")
	}
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil {
		t.Fatal("not a rolling update")
	}
	if ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 0 || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 1 {
		t.Errorf("rolling update maxSurge %v maxUnavailable %v; want 0 and 1 (one node at a time, never two daemons on a node)", ru.MaxSurge, ru.MaxUnavailable)
	}

	// The PodMonitor selects these pods, on a port the container has.
	sel := c.podMonitor.Spec.Selector.MatchLabels
	for k, v := range sel {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("PodMonitor selects %s=%s; the pods have %v", k, v, ds.Spec.Template.Labels)
		}
	}
	if len(sel) == 0 || len(c.podMonitor.Spec.PodMetricsEndpoints) == 0 {
		t.Fatal("PodMonitor selects nothing")
	}
	port := c.podMonitor.Spec.PodMetricsEndpoints[0].Port
	if port == nil || !slices.ContainsFunc(ctr.Ports, func(p corev1.ContainerPort) bool { return p.Name == *port }) {
		t.Errorf("PodMonitor scrapes port %v; the container has %v", port, ctr.Ports)
	}
	// The alerts select job="xdpguard".
	if jl := c.podMonitor.Spec.JobLabel; ds.Spec.Template.Labels[jl] != "xdpguard" {
		t.Errorf("PodMonitor jobLabel %q gives the job %q; the alerts expect xdpguard", jl, ds.Spec.Template.Labels[jl])
	}
	if c.namespace.Name != c.k.Namespace {
		t.Errorf("namespace %s, kustomization namespace %s", c.namespace.Name, c.k.Namespace)
	}

	// Every flag the DaemonSet passes exists in `xdpguard run`.
	bin := filepath.Join(t.TempDir(), "xdpguard")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/xdpguard/xdpguard/cmd/xdpguard").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	help, err := exec.Command(bin, "run", "--help").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if ctr.Args[0] != "run" {
		t.Errorf("args start with %q, not run", ctr.Args[0])
	}
	for _, a := range ctr.Args[1:] {
		flag, _, _ := strings.Cut(a, "=")
		if !strings.Contains(string(help), " "+flag+" ") {
			t.Errorf("xdpguard run has no flag %s", flag)
		}
	}
}

var imageDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// The DaemonSet runs its image by digest, never by a tag a push can move:
// the manifest's image reference and the kustomization's images: entry (what
// an overlay replaces) name the same digest.
func TestKubernetesImageByDigest(t *testing.T) {
	c := loadBase(t)
	image := c.daemonSet.Spec.Template.Spec.Containers[0].Image
	name, digest, ok := strings.Cut(image, "@")
	if !ok || !imageDigest.MatchString(digest) {
		t.Fatalf("image %q is not name@sha256:<64 hex>", image)
	}
	if strings.Contains(name[strings.LastIndex(name, "/")+1:], ":") {
		t.Errorf("image %q has a tag as well as its digest", image)
	}
	if len(c.k.Images) != 1 || c.k.Images[0].Name != name || c.k.Images[0].Digest != digest || c.k.Images[0].NewTag != "" {
		t.Errorf("kustomization images %+v, want %s with digest %s and no tag", c.k.Images, name, digest)
	}
}

// dockerfile is what TestContainerImage reads of the Dockerfile: its
// stages' bases, the ARG defaults, the build stage's RUN commands, the
// final stage's COPY lines, ENTRYPOINT and CMD.
type dockerfile struct {
	froms      []string
	args       map[string]string
	runs       []string   // the build stage's, --mount options removed
	copies     [][]string // the final stage's: [--from=..., src, dst] or [src, dst]
	entry, cmd []string
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{args: map[string]string{}}
	text := strings.ReplaceAll(string(b), "\\\n", " ") // continuation lines
	for _, line := range strings.Split(text, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		rest := strings.TrimSpace(line[len(fields[0]):])
		final := len(d.froms) > 1
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			d.froms = append(d.froms, fields[1])
		case "ARG":
			k, v, _ := strings.Cut(rest, "=")
			d.args[k] = v
		case "RUN":
			for strings.HasPrefix(rest, "--") {
				_, rest, _ = strings.Cut(rest, " ")
				rest = strings.TrimSpace(rest)
			}
			if !final {
				d.runs = append(d.runs, rest)
			}
		case "COPY":
			if final {
				d.copies = append(d.copies, fields[1:])
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entry); err != nil {
				t.Fatalf("ENTRYPOINT %s: %v (want the exec form)", rest, err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(rest), &d.cmd); err != nil {
				t.Fatalf("CMD %s: %v (want the exec form)", rest, err)
			}
		}
	}
	return d
}

// The image as the Dockerfile makes it, without a container engine (there
// is no Docker daemon here, nor a registry): its build stage's commands run
// as written in a copy of the build context's place (the repository, at
// WORKDIR), with its ARGs; its final stage's file system is assembled from
// its COPY lines; its ENTRYPOINT then runs in a chroot of that file system
// alone (no libc, no shell: what distroless/static has, and less). The
// binary must be static, carry the VERSION the build was given, and check
// the default policy the image ships.
func TestContainerImage(t *testing.T) {
	d := parseDockerfile(t, "container/Dockerfile")
	if len(d.froms) < 2 {
		t.Fatalf("not multi-stage: %v", d.froms)
	}
	final := d.froms[len(d.froms)-1]
	if final != "scratch" && !strings.HasPrefix(final, "gcr.io/distroless/static") {
		t.Errorf("final stage %s is neither scratch nor distroless static", final)
	}
	if len(d.runs) == 0 || len(d.entry) == 0 {
		t.Fatalf("no build command or no entrypoint: %+v", d)
	}
	if os.Geteuid() != 0 {
		t.Skip("the image's file system runs in a chroot: needs root")
	}
	tmp := t.TempDir()
	out, root := filepath.Join(tmp, "out"), filepath.Join(tmp, "root")
	const version = "v9.9.9-image-test"
	for _, run := range d.runs {
		// /out is the build stage's output; the context is the repository.
		cmd := exec.Command("sh", "-c", strings.ReplaceAll(run, "/out/", out+"/"))
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "VERSION="+version)
		for k, v := range d.args {
			if k != "VERSION" {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
		}
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("RUN %s: %v\n%s", run, err, b)
		}
	}
	for _, c := range d.copies {
		src, dst := c[len(c)-2], c[len(c)-1]
		if strings.HasPrefix(c[0], "--from=") {
			src = strings.ReplaceAll(src, "/out/", out+"/")
		} else {
			src = filepath.Join("..", src)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("COPY %v: %v", c, err)
		}
		fi, _ := os.Stat(src)
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(root, d.entry[0])
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the entrypoint %s: %v", d.entry[0], err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is not static and would not run on distroless/static")
		}
	}
	f.Close()
	inImage := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("chroot", append([]string{root}, append(slices.Clone(d.entry), args...)...)...)
		cmd.Env = []string{} // an image's environment, not ours
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("in the image, %v %v: %v\n%s", d.entry, args, err, b)
		}
		return string(b)
	}
	if got := inImage("version"); !strings.Contains(got, version) {
		t.Errorf("the image's xdpguard says %q; the build was given VERSION=%s", got, version)
	}
	if got := inImage("check", "--policy", "/etc/xdpguard/policy.yaml"); !strings.Contains(got, "tcp allow") {
		t.Errorf("the image's default policy: %s", got)
	}
	if got := inImage(d.cmd...); !strings.Contains(got, "Usage") {
		t.Errorf("the image's default command %v: %s", d.cmd, got)
	}
}
