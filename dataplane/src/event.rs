//! Events from the packet path to the control plane.
