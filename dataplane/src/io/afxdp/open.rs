//! The steps of [`AfXdpIo::open`] after the ports are checked: the shared
//! offload pins, the offload handles, binding the sockets, and arming them.

use super::*;

/// Where the offload maps both ports' programs share are pinned while they
/// load (None without offload); stale pins of this namespace are removed.
pub(super) fn shared_pins(cfg: &AfXdpConfig) -> Result<Option<offload::SharedPins>, AfXdpError> {
    if !cfg.offload {
        return Ok(None);
    }
    let dir = cfg
        .pin_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR));
    xdp::ensure_pin_dir(&cfg.port_a, &dir)?;
    let netns = xdp::current_netns_id().map_err(|e| AfXdpError::Pin {
        ifname: cfg.port_a.clone(),
        path: dir.clone(),
        reason: format!("read the network namespace: {e}"),
    })?;
    offload::SharedPins::remove_stale(&dir, netns);
    Ok(Some(offload::SharedPins::new(&dir, netns)))
}

/// One handle on the offload maps per queue (worker); the first also reads
/// the programs' tier counters, so they are counted once. None without
/// offload.
pub(super) fn offload_handles(
    cfg: &AfXdpConfig,
    xdp_a: &mut XdpPort,
    xdp_b: &mut XdpPort,
) -> Result<Option<Vec<XdpOffloadMap>>, AfXdpError> {
    let (Some(a), Some(b)) = (xdp_a.take_offload_maps(), xdp_b.take_offload_maps()) else {
        return Ok(None);
    };
    let entries = cfg.offload_entries.max(1) as usize;
    let mut maps = Vec::with_capacity(cfg.queues as usize);
    for _ in 1..cfg.queues {
        maps.push(
            offload::reopen(&a.flows)
                .and_then(|f| Ok((f, offload::reopen(&a.generation)?)))
                .and_then(|(f, g)| XdpOffloadMap::new(f, g, Vec::new(), entries)),
        );
    }
    maps.insert(
        0,
        XdpOffloadMap::new(a.flows, a.generation, vec![a.tier, b.tier], entries),
    );
    let maps = maps.into_iter().collect::<Result<Vec<_>, _>>();
    Ok(Some(maps.map_err(|e| AfXdpError::Program {
        ifname: cfg.port_a.clone(),
        reason: format!("offload maps: {}", sys::error_chain(&e)),
    })?))
}

/// Bind the sockets in the first mode of the configured preference that
/// works; a permission or busy error ends the search at once.
pub(super) fn bind_first(
    cfg: &AfXdpConfig,
    ifindex: [u32; 2],
    queue_counts: [u32; 2],
    rings: RingSizes,
) -> Result<(BindMode, Bound), AfXdpError> {
    let mut tried = Vec::new();
    for &mode in cfg.bind.candidates() {
        match bind_all(cfg, ifindex, queue_counts, mode, rings) {
            Ok(b) => return Ok((mode, b)),
            Err(e @ (AfXdpError::NotPermitted { .. } | AfXdpError::Busy { .. })) => return Err(e),
            Err(e) => tried.push(format!("{mode}: {e}")),
        }
    }
    Err(AfXdpError::Bind {
        ifname: cfg.port_a.clone(),
        tried: tried.join("; "),
    })
}

impl AfXdpIo {
    /// Busy polling if configured, the fill rings topped up, and only then
    /// each socket registered with its port's program (until then the fail
    /// mode holds).
    pub(super) fn arm(&mut self, cfg: &AfXdpConfig) -> Result<(), AfXdpError> {
        if cfg.busy_poll_us > 0 {
            for p in &self.ports {
                for q in &p.queues {
                    sys::set_busy_poll(q.fd(), cfg.busy_poll_us, cfg.busy_poll_budget).map_err(
                        |(op, errno)| AfXdpError::socket(&p.ifname, q.queue_id, op, errno),
                    )?;
                }
            }
        }
        for p in &mut self.ports {
            for q in &mut p.queues {
                q.fill(&mut self.free, p.fill_target);
            }
        }
        for p in &mut self.ports {
            // Every port's program was attached in `open`; `xdp` is only
            // `None` after shutdown.
            if let Some(xdp) = p.xdp.as_mut() {
                for q in &p.queues {
                    xdp.register_socket(q.queue_id, q.fd())?;
                }
            }
        }
        Ok(())
    }
}

/// The receive queues of a port to bind: all of them with one worker, exactly
/// one per worker otherwise.
pub(super) fn queue_count(cfg: &AfXdpConfig, port: Port) -> Result<u32, AfXdpError> {
    let ifname = cfg.name(port);
    let found = ethtool::rx_queues(ifname).map_err(|e| {
        AfXdpError::socket(
            ifname,
            0,
            "read its channels (ETHTOOL_GCHANNELS)",
            e.raw_os_error().unwrap_or(libc::EIO),
        )
    })?;
    if cfg.queues > 1 && found != cfg.queues {
        return Err(AfXdpError::Queues {
            ifname: ifname.to_string(),
            found,
            workers: cfg.queues,
        });
    }
    Ok(found.min(xdp::MAX_QUEUES))
}

/// The port's MTU plus Ethernet header and VLAN tags must fit a chunk.
pub(super) fn check_mtu(cfg: &AfXdpConfig, ifname: &str) -> Result<(), AfXdpError> {
    let mtu = sys::mtu(ifname).map_err(|_| AfXdpError::NoInterface {
        ifname: ifname.to_string(),
    })?;
    let need = mtu + 14 + 4 * u32::from(cfg.max_vlan_tags);
    let room = cfg.frame_room();
    if need > room {
        return Err(AfXdpError::MtuTooLarge {
            ifname: ifname.to_string(),
            mtu,
            vlan_tags: cfg.max_vlan_tags,
            need,
            chunk: cfg.chunk_size,
            room,
        });
    }
    Ok(())
}

/// In drop order: sockets (by queue, of port A and B), UMEM registration, memory.
pub(super) type Bound = ([Vec<QueueSocket>; 2], Umem, UmemArea);

/// Map and register the UMEM and bind queues `0..queue_counts[p]` of each port in `mode`.
pub(super) fn bind_all(
    cfg: &AfXdpConfig,
    ifindex: [u32; 2],
    queue_counts: [u32; 2],
    mode: socket::BindMode,
    rings: RingSizes,
) -> Result<Bound, AfXdpError> {
    let len = cfg.frames as usize * cfg.chunk_size as usize;
    let area = UmemArea::new(len).map_err(|e| AfXdpError::Umem(format!("map {len} bytes: {e}")))?;
    let umem = socket::register_umem(&cfg.port_a, &area, cfg.chunk_size, rings)?;
    let mut sockets = [Vec::new(), Vec::new()];
    for (i, p) in Port::BOTH.into_iter().enumerate() {
        for queue in 0..queue_counts[i] {
            let first = queue == 0 && p == Port::A;
            sockets[i].push(QueueSocket::open(
                &umem,
                cfg.name(p),
                ifindex[i],
                queue,
                first,
                mode,
                rings,
                cfg.bind_retries,
            )?);
        }
    }
    Ok((sockets, umem, area))
}

/// `AfXdpIo` can be opened on one thread and moved to its worker's thread.
const _: () = {
    const fn is_send<T: Send>() {}
    is_send::<AfXdpIo>();
};
