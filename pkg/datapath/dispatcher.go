package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// libxdp's dispatcher, version 2 (bpf/dispatcher.c): what pkg/loader
// builds to join, rebuild or leave a multi-program XDP attach.
const (
	DispatcherVersion = 2
	DispatcherMagic   = 236
	// DispatcherSlots is how many programs one dispatcher runs.
	DispatcherSlots = 10
	// DispatcherRetval is what an empty slot returns; every slot's
	// chain-call bitmap has its bit.
	DispatcherRetval = 31
	// DispatcherName is the dispatcher program's name, which libxdp
	// checks.
	DispatcherName = dispatcherProgXdpDispatcher
)

// DispatcherConfig is the dispatcher's .rodata: libxdp's struct
// xdp_dispatcher_config, version 2, as the kernel holds it.
type DispatcherConfig = dispatcherXdpDispatcherConfig

// DispatcherSlot names slot i's stub function: the freplace target of the
// component program in slot i.
func DispatcherSlot(i int) string { return fmt.Sprintf("prog%d", i) }

// LoadDispatcher loads a dispatcher running cfg's NumProgsEnabled slots
// (magic and version are set here), with BPF_F_XDP_HAS_FRAGS when frags.
// Nothing runs until the caller attaches components and the dispatcher.
func LoadDispatcher(cfg DispatcherConfig, frags bool) (*ebpf.Program, error) {
	if cfg.NumProgsEnabled > DispatcherSlots {
		return nil, fmt.Errorf("dispatcher: %d programs, at most %d", cfg.NumProgsEnabled, DispatcherSlots)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	spec, err := loadDispatcher()
	if err != nil {
		return nil, fmt.Errorf("parse embedded dispatcher: %w", err)
	}
	cfg.Magic, cfg.DispatcherVersion = DispatcherMagic, DispatcherVersion
	cfg.IsXdpFrags = flag(frags)
	if err := spec.Variables[dispatcherVarConf].Set(cfg); err != nil {
		return nil, fmt.Errorf("set dispatcher config: %w", err)
	}
	if frags {
		spec.Programs[dispatcherProgXdpDispatcher].Flags |= unix.BPF_F_XDP_HAS_FRAGS
	}
	var objs dispatcherPrograms
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load dispatcher: %+v", ve)
		}
		return nil, fmt.Errorf("load dispatcher: %w", err)
	}
	return objs.XdpDispatcher, nil // it holds its .rodata
}
