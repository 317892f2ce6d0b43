package kernel

// LoadModuleDeferInit loads a module like LoadModule but leaves its init
// regions mapped: do_init_module queues them for do_free_init, which a
// worker runs after an RCU grace period, so another module can be loaded
// (and placed) before they are freed. FreeModuleInit frees them.
func (k *Kernel) LoadModuleDeferInit(c CPU, spec ModuleSpec) (*Module, error) {
	return k.loadModule(c, spec, false)
}

// FreeModuleInit is do_free_init: the init regions are freed with
// execmem_free. A second call does nothing.
func (k *Kernel) FreeModuleInit(c CPU, m *Module) error {
	for _, t := range []ModMemType{ModInitText, ModInitData, ModInitRodata} {
		if err := k.moduleMemoryFree(c, m, t); err != nil {
			return err
		}
	}
	return nil
}

// FreeModuleRegion frees one region of a loaded module with execmem_free, as
// do_free_init does for each init region in turn (a replay frees each when
// the recorded kernel released its VA). Freeing a freed region does nothing.
func (k *Kernel) FreeModuleRegion(c CPU, m *Module, t ModMemType) error {
	if t < 0 || t >= NumModMemTypes {
		return ErrInvalid
	}
	return k.moduleMemoryFree(c, m, t)
}
