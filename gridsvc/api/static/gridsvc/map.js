/* The dispatcher's map (/map): grids coloured by open cases or workload, layers from vector tiles,
   popups for grids, cases, stations and components, case filters. */
(function () {
  'use strict';
  var gs = window.gridsvc;
  var el = gs.el;

  // Open cases per responsibility grid: 0 is calm, 7 or more needs a dispatcher's eye.
  var CASE_BINS = [
    { max: 0, colour: '#edf8e9', label: '0' },
    { max: 1, colour: '#fdd49e', label: '1' },
    { max: 3, colour: '#fdae6b', label: '2–3' },
    { max: 6, colour: '#f16913', label: '4–6' },
    { max: Infinity, colour: '#a63603', label: '≥ 7' },
  ];
  var NO_DATA = '#d9d9d9';
  var MAJOR_COLOURS = { '01': '#1f78b4', '02': '#6a3d9a', '03': '#33a02c', '04': '#b2df8a', '05': '#b15928', '06': '#999999' };
  var LAYER_NAMES = {
    communities: '社区边界 communities',
    responsibility_grids: '责任网格 responsibility grids',
    unit_grids: '单元网格 unit grids',
    components: '部件 components',
    stations: '城管工作站 stations',
    cases: '在办案件 open cases',
  };

  /* Workload bins around the plan's household range (its drawing parameters), or 300–500 by default:
     below the range, the lower and upper half of it, above it. */
  function workloadBins(plan) {
    var p = (plan && plan.parameters) || {};
    var lo = p.households_min || 300;
    var hi = p.households_max || 500;
    var mid = Math.round((lo + hi) / 2);
    return [
      { max: lo - 1e-9, colour: '#deebf7', label: '< ' + lo },
      { max: mid, colour: '#9ecae1', label: lo + '–' + mid },
      { max: hi, colour: '#4292c6', label: mid + '–' + hi },
      { max: Infinity, colour: '#08519c', label: '> ' + hi },
    ];
  }

  function binColour(bins, value) {
    if (value === null || value === undefined || isNaN(value)) return NO_DATA;
    for (var i = 0; i < bins.length; i++) if (value <= bins[i].max) return bins[i].colour;
    return NO_DATA;
  }

  // Workload when the plan has one, else households (the demo plan and imported plans carry none).
  function workloadOf(p) {
    return p.workload !== null && p.workload !== undefined ? Number(p.workload) : Number(p.households);
  }

  gs.startDispatcherMap = function (map, cfg) {
    gs.patchVectorGrid();
    var panel = document.getElementById('gs-panel');
    panel.hidden = true;
    gs.signIn(cfg, cfg.roles, function (me) {
      build(map, cfg, me, panel);
    });
  };

  function build(map, cfg, me, panel) {
    var state = { mode: 'open_cases', bins: CASE_BINS, workBins: workloadBins(null), layers: {}, selected: null };
    var page = (window.gridsvcPage = { map: map, state: state, ready: false });
    ['gs-grids', 'gs-lines', 'gs-points', 'gs-cases'].forEach(function (name, i) {
      map.createPane(name).style.zIndex = String(410 + i * 10);
    });

    var here = gs.params();
    if (here.get('lon') && here.get('lat')) {
      map.setView([Number(here.get('lat')), Number(here.get('lon'))], Number(here.get('z') || 15));
    } else {
      gs.fitBox(map, cfg.bounds, 13);
    }

    // ---- the side panel: who, colouring, legend, filters, zoom hints
    panel.hidden = false;
    var legend = el('div', { id: 'gs-legend' });
    var hints = el('ul', { id: 'gs-zoom-hints', class: 'gs-muted' });
    var caseClass = el('select', { id: 'gs-case-class', 'aria-label': '案件类别' }, [el('option', { value: '', text: '全部类别 all classes' })]);
    var caseStatus = el('select', { id: 'gs-case-status', 'aria-label': '案件状态' }, [el('option', { value: '', text: '全部在办 all open' })]);
    ['registered', 'dispatched', 'in_progress', 'reported_back', 'verified', 'parked', 'reported'].forEach(function (s) {
      caseStatus.appendChild(el('option', { value: s, text: gs.STATUS_NAMES[s] + ' ' + s }));
    });
    var overdue = el('input', { type: 'checkbox', id: 'gs-case-overdue' });
    var componentClass = el('select', { id: 'gs-component-class', 'aria-label': '部件类别' }, [el('option', { value: '', text: '全部部件 all classes' })]);
    var modeCases = el('input', { type: 'radio', name: 'gs-mode', id: 'gs-mode-cases', value: 'open_cases', checked: true });
    var modeWork = el('input', { type: 'radio', name: 'gs-mode', id: 'gs-mode-workload', value: 'workload' });
    var status = el('p', { id: 'gs-status', class: 'gs-muted', text: '加载图层… loading layers' });

    panel.appendChild(el('header', {}, [el('h1', { text: cfg.title }), gs.userBadge(me)]));
    panel.appendChild(
      el('section', {}, [
        el('h2', { text: '网格着色 Colour grids by' }),
        el('label', {}, [modeCases, ' 在办案件数 open cases']),
        el('label', {}, [modeWork, ' 工作量 workload']),
        legend,
      ])
    );
    panel.appendChild(
      el('section', {}, [
        el('h2', { text: '案件筛选 Case filter' }),
        el('label', { class: 'gs-field' }, ['类别 ', caseClass]),
        el('label', { class: 'gs-field' }, ['状态 ', caseStatus]),
        el('label', {}, [overdue, ' 仅超期 overdue only']),
        el('h2', { text: '部件 Components' }),
        el('label', { class: 'gs-field' }, ['类别 ', componentClass]),
      ])
    );
    panel.appendChild(el('section', {}, [el('h2', { text: '显示级别 Zoom' }), hints, status]));

    modeCases.addEventListener('change', function () { setMode('open_cases'); });
    modeWork.addEventListener('change', function () { setMode('workload'); });

    function gridStyle(p) {
      var colour = state.mode === 'open_cases' ? binColour(CASE_BINS, Number(p.open_cases)) : binColour(state.workBins, workloadOf(p));
      return { fill: true, fillColor: colour, fillOpacity: 0.55, color: '#525252', weight: 1 };
    }

    function drawLegend() {
      gs.clear(legend);
      var bins = state.mode === 'open_cases' ? CASE_BINS : state.workBins;
      var title = state.mode === 'open_cases' ? '每网格在办案件 open cases per grid' : '工作量（无则按户数）workload, else households';
      legend.appendChild(el('div', { class: 'gs-legend-title', text: title }));
      bins.forEach(function (b) {
        legend.appendChild(el('div', { class: 'gs-legend-row' }, [el('span', { class: 'gs-swatch', style: 'background:' + b.colour }), b.label]));
      });
      legend.appendChild(el('div', { class: 'gs-legend-row' }, [el('span', { class: 'gs-swatch', style: 'background:' + NO_DATA }), '无数据 no data']));
      legend.appendChild(el('div', { class: 'gs-legend-title', text: '点 Points' }));
      [
        ['gs-dot', '#d7301f', '超期案件 overdue case'],
        ['gs-dot', '#fd8d3c', '在办案件 open case'],
        ['gs-square', '#2171b5', '城管工作站 station'],
        ['gs-dot-small', '#1f78b4', '部件（按大类着色）component by major class'],
      ].forEach(function (row) {
        legend.appendChild(el('div', { class: 'gs-legend-row' }, [el('span', { class: row[0], style: 'background:' + row[1] }), row[2]]));
      });
    }

    function setMode(mode) {
      state.mode = mode;
      drawLegend();
      if (state.layers.responsibility_grids) state.layers.responsibility_grids.redraw();
    }

    function caseParams() {
      // Component and event class codes overlap (0101 is a manhole cover and exposed garbage): the tiles
      // take C0101 or E0101 to name the kind, as Open311's service codes do.
      return { class: caseClass.value || null, status: caseStatus.value || null, overdue: overdue.checked ? 'true' : null };
    }
    function componentParams() {
      return { class: componentClass.value || null };
    }
    function refilter(layer, params) {
      var vg = state.layers[layer];
      if (vg) vg.setUrl(gs.tileUrl(cfg, layer, params));
    }
    caseClass.addEventListener('change', function () { refilter('cases', caseParams()); });
    caseStatus.addEventListener('change', function () { refilter('cases', caseParams()); });
    overdue.addEventListener('change', function () { refilter('cases', caseParams()); });
    componentClass.addEventListener('change', function () { refilter('components', componentParams()); });

    function updateHints() {
      gs.clear(hints);
      var z = map.getZoom();
      Object.keys(LAYER_NAMES).forEach(function (name) {
        var vg = state.layers[name];
        if (!vg) return;
        var shown = z >= vg.gsMinZoom;
        hints.appendChild(
          el('li', { class: shown ? 'gs-shown' : 'gs-hidden', 'data-layer': name }, [
            LAYER_NAMES[name] + (shown ? '' : ' — 放大到 ' + vg.gsMinZoom + ' 级显示 (zoom ≥ ' + vg.gsMinZoom + ')'),
          ])
        );
      });
      hints.appendChild(el('li', { class: 'gs-muted', text: '当前级别 zoom ' + z }));
    }
    map.on('zoomend', updateHints);

    // ---- popups
    function gridPopup(e) {
      var p = e.layer.properties;
      var grids = state.layers.responsibility_grids;
      if (state.selected) grids.resetFeatureStyle(state.selected);
      state.selected = p.code;
      grids.setFeatureStyle(p.code, Object.assign(gridStyle(p), { color: '#08306b', weight: 3 }));
      var body = el('div', { class: 'gs-popup', id: 'gs-grid-popup' }, [
        el('h3', { text: '责任网格 ' + p.code }),
        gs.rows([
          ['网格编码 code', el('code', { class: 'gs-grid-code', text: p.code })],
          ['社区 community', (p.community_name || '') + ' ' + (p.community_code || '')],
          ['工作站 station', p.station_name],
          ['网格员 worker', p.worker_name],
          ['户数 households', p.households],
          ['工作量 workload', p.workload],
          ['在办案件 open cases', p.open_cases],
        ]),
      ]);
      L.popup({ maxWidth: 320 }).setLatLng(e.latlng).setContent(body).openOn(map);
      L.DomEvent.stopPropagation(e);
    }

    function casePopup(e) {
      var p = e.layer.properties;
      var detail = el('div', { class: 'gs-case-detail', text: '载入详情… loading' });
      var body = el('div', { class: 'gs-popup', id: 'gs-case-popup' }, [
        el('h3', { text: '案件 ' + p.request_code }),
        gs.rows([
          ['类别 class', (p.class_name || '') + ' ' + (p.class_code || '')],
          ['状态 status', (gs.STATUS_NAMES[p.status] || '') + ' ' + p.status],
          ['时限 deadline', el('span', { class: p.overdue ? 'gs-overdue' : '', text: gs.formatTime(p.deadline) + (p.overdue ? ' 已超期 overdue' : '') })],
        ]),
        detail,
      ]);
      var popup = L.popup({ maxWidth: 380, maxHeight: Math.max(200, Math.round(map.getSize().y * 0.6)) })
        .setLatLng(e.latlng)
        .setContent(body)
        .openOn(map);
      L.DomEvent.stopPropagation(e);
      gs.api(cfg, '/v1/cases/' + encodeURIComponent(p.request_code)).then(
        function (c) {
          gs.clear(detail).appendChild(caseDetail(c));
          popup.update(); // lay out and pan again: the details made it taller
        },
        function (err) {
          detail.textContent = '无法载入案件：' + err.message;
          popup.update();
        }
      );
    }

    var REASON_NAMES = {
      class: '类别 class',
      component: '部件 component',
      owner: '归属 owner',
      department: '部门 department',
      handling_level: '层级 level',
      deadlines: '时限 deadlines',
      needs_confirmation: '需确认 confirm',
      confirm_reasons: '确认原因',
      duplicate: '疑似重复 duplicate',
    };

    // One line per routing decision, in words; anything unknown is shown as its plain fields.
    function reasonText(key, r) {
      if (r === null || r === undefined) return '—';
      if (typeof r !== 'object') return String(r);
      if (Array.isArray(r)) return r.length ? r.map(function (x) { return reasonText('', x); }).join('；') : '—';
      if (key === 'class') return (r.name || '') + ' ' + (r.code || '') + ' (' + (r.kind || '') + ')';
      if (key === 'owner') {
        var owner = (r.responsibility_grid_code || '—') + ' / 单元 ' + (r.unit_grid_code || '—') + ' · ' + (r.how || '');
        if (r.near_boundary) owner += ' · 靠近边界 near a boundary';
        return owner + (r.notes && r.notes.length ? ' · ' + r.notes.join('；') : '');
      }
      if (key === 'deadlines') {
        return Object.keys(r)
          .map(function (stage) {
            var d = r[stage] || {};
            var due = d.due || d.due_if_dispatched_now;
            return stage + ' ' + (d.limit || '') + (due ? ' → ' + gs.formatTime(due) : '');
          })
          .join('；');
      }
      var parts = [];
      ['code', 'level', 'name'].forEach(function (f) { if (r[f]) parts.push(r[f]); });
      if (r.reason) parts.push(r.reason);
      if (r.distance_m !== undefined && r.distance_m !== null) parts.push(r.distance_m + ' m');
      if (parts.length) return parts.join(' · ');
      return Object.keys(r)
        .filter(function (k) { return r[k] !== null && typeof r[k] !== 'object'; })
        .map(function (k) { return k + ' ' + r[k]; })
        .join(' · ');
    }

    function caseDetail(c) {
      var routing = c.routing || {};
      var reasons = el('ul', { class: 'gs-reasons' });
      var order = Object.keys(REASON_NAMES);
      var keys = Object.keys(routing).sort(function (a, b) {
        var ia = order.indexOf(a) < 0 ? 99 : order.indexOf(a);
        var ib = order.indexOf(b) < 0 ? 99 : order.indexOf(b);
        return ia - ib;
      });
      keys.forEach(function (k) {
        if (k === 'confirm_reasons' && !(routing[k] || []).length) return;
        reasons.appendChild(el('li', {}, [el('b', { text: (REASON_NAMES[k] || k) + '：' }), reasonText(k, routing[k])]));
      });
      var history = el('ol', { class: 'gs-history' });
      (c.history || []).forEach(function (h) {
        history.appendChild(
          el('li', {}, [
            gs.formatTime(h.at) + ' ' + h.action + ' ' + (h.from_status || '') + '→' + (h.to_status || '') + ' · ' + (h.actor || ''),
            h.note ? el('div', { class: 'gs-muted', text: h.note }) : null,
          ])
        );
      });
      return el('div', {}, [
        gs.rows([
          ['处置时限 handle by', gs.formatTime(c.handle_deadline)],
          ['层级 level', c.handling_level],
          ['部门 department', c.department_code],
          ['描述 description', c.description],
        ]),
        el('h4', { text: '派遣依据 routing reasons' }),
        reasons,
        el('h4', { text: '处理记录 history' }),
        history,
      ]);
    }

    function stationPopup(e) {
      var p = e.layer.properties;
      L.popup()
        .setLatLng(e.latlng)
        .setContent(
          el('div', { class: 'gs-popup', id: 'gs-station-popup' }, [
            el('h3', { text: p.name }),
            gs.rows([
              ['电话 phone', gs.telLink(p.phone)],
              ['社区 community', p.community_code],
              ['编码 code', p.code],
            ]),
          ])
        )
        .openOn(map);
      L.DomEvent.stopPropagation(e);
    }

    function componentPopup(e) {
      var p = e.layer.properties;
      L.popup()
        .setLatLng(e.latlng)
        .setContent(
          el('div', { class: 'gs-popup', id: 'gs-component-popup' }, [
            el('h3', { text: (p.class_name || '部件') + ' ' + (p.name || '') }),
            gs.rows([
              ['部件编码 code', el('code', { text: p.code })],
              ['类别 class', p.class_code],
              ['状态 status', (gs.COMPONENT_STATUS_NAMES[p.status] || '') + ' ' + (p.status || '')],
            ]),
          ])
        )
        .openOn(map);
      L.DomEvent.stopPropagation(e);
    }

    map.on('popupclose', function () {
      if (state.selected && state.layers.responsibility_grids) {
        state.layers.responsibility_grids.resetFeatureStyle(state.selected);
        state.selected = null;
      }
    });

    // ---- the layers, each asked for its zoom range first
    var overlays = {};
    var control = L.control.layers(cfg.baseLayer ? { '底图 base map': window[cfg.baseLayer] } : {}, {}, { collapsed: false, position: 'topright' }).addTo(map);
    var specs = [
      ['communities', {}, { pane: 'gs-lines', interactive: false, vectorTileLayerStyles: { communities: { weight: 2, color: '#636363', fill: false, dashArray: '4 3' } } }, true],
      ['responsibility_grids', {}, { pane: 'gs-grids', vectorTileLayerStyles: { responsibility_grids: gridStyle }, getFeatureId: function (f) { return f.properties.code; } }, true],
      ['unit_grids', {}, { pane: 'gs-lines', interactive: false, vectorTileLayerStyles: { unit_grids: { weight: 0.6, color: '#737373', fill: false } } }, false],
      [
        'components',
        componentParams(),
        {
          pane: 'gs-points',
          vectorTileLayerStyles: {
            components: function (p) {
              var c = MAJOR_COLOURS[String(p.class_code || '').slice(0, 2)] || '#999999';
              return { radius: 3, fill: true, fillColor: c, fillOpacity: 0.9, color: '#ffffff', weight: 0.5 };
            },
          },
        },
        false,
      ],
      ['stations', {}, { pane: 'gs-points', vectorTileLayerStyles: { stations: function (p, z) { return { radius: z < 14 ? 4 : 6, fill: true, fillColor: '#2171b5', fillOpacity: 1, color: '#ffffff', weight: z < 14 ? 1 : 2 }; } } }, true],
      [
        'cases',
        caseParams(),
        {
          pane: 'gs-cases',
          vectorTileLayerStyles: {
            cases: function (p) {
              var late = p.overdue === true || p.overdue === 'true';
              return { radius: 5, fill: true, fillColor: late ? '#d7301f' : '#fd8d3c', fillOpacity: 0.95, color: '#ffffff', weight: 1 };
            },
          },
        },
        true,
      ],
    ];
    var handlers = { responsibility_grids: gridPopup, cases: casePopup, stations: stationPopup, components: componentPopup };
    drawLegend();

    Promise.all(
      specs.map(function (spec) {
        return gs.vectorLayer(cfg, spec[0], spec[1], spec[2]).then(
          function (vg) {
            state.layers[spec[0]] = vg;
            if (handlers[spec[0]]) vg.on('click', handlers[spec[0]]);
            overlays[spec[0]] = vg;
            return { name: spec[0], layer: vg, on: spec[3] };
          },
          function (err) {
            return { name: spec[0], error: err };
          }
        );
      })
    ).then(function (made) {
      var failed = [];
      made.forEach(function (m) {
        if (m.error) {
          failed.push(LAYER_NAMES[m.name] + '：' + m.error.message);
          return;
        }
        control.addOverlay(m.layer, LAYER_NAMES[m.name]);
        if (m.on) m.layer.addTo(map);
      });
      status.textContent = failed.length ? '图层错误 ' + failed.join('；') : '图层就绪 layers ready';
      status.className = failed.length ? 'gs-error' : 'gs-muted';
      updateHints();
      page.ready = true;
    });

    // Filter lists: the classes are reference data (open endpoints).
    gs.api(cfg, '/v1/component-classes').then(function (classes) {
      var group = el('optgroup', { label: '部件 component' });
      classes.forEach(function (k) {
        group.appendChild(el('option', { value: 'C' + k.code, text: k.code + ' ' + k.name_zh }));
        componentClass.appendChild(el('option', { value: k.code, text: k.code + ' ' + k.name_zh }));
      });
      caseClass.appendChild(group);
    });
    gs.api(cfg, '/v1/event-classes').then(function (classes) {
      var group = el('optgroup', { label: '事件 event' });
      classes.forEach(function (k) {
        group.appendChild(el('option', { value: 'E' + k.code, text: k.code + ' ' + k.name_zh }));
      });
      caseClass.appendChild(group);
    });
    gs.api(cfg, '/v1/plans').then(
      function (answer) {
        var active = (answer.plans || []).filter(function (p) { return p.status === 'active'; })[0];
        state.workBins = workloadBins(active);
        if (state.mode === 'workload') setMode('workload');
      },
      function () { /* a role without plan access keeps the default bins */ }
    );
  }
})();
