/* The plan review map (/plans/{id}/map): the draft over (or beside) the plan it would replace, the
   changed grids highlighted, the quality report and the comparison's counts alongside. */
(function () {
  'use strict';
  var gs = window.gridsvc;
  var el = gs.el;

  // The colours of gis/planmap.py's comparison map, so the two read the same.
  var CHANGE = {
    added: { colour: '#2ca25f', name: '新增 added' },
    reshaped: { colour: '#f28e2b', name: '调整 reshaped' },
    removed: { colour: '#d62728', name: '撤销 removed' },
  };
  var WORST_ROWS = 30;

  gs.startPlanReview = function (map, cfg) {
    gs.patchVectorGrid();
    var panel = document.getElementById('gs-panel');
    panel.hidden = true;
    gs.signIn(cfg, cfg.roles, function (me) {
      build(map, cfg, me, panel);
    });
  };

  function fmt(value, digits) {
    if (value === null || value === undefined) return '—';
    if (typeof value === 'boolean') return value ? '是 yes' : '否 no';
    if (typeof value === 'number') return digits === undefined ? String(value) : value.toFixed(digits);
    return String(value);
  }

  function build(map, cfg, me, panel) {
    var page = (window.gridsvcPage = { map: map, ready: false });
    var against = gs.params().get('against');
    var state = { change: {}, byCommunity: {}, mode: 'over' };
    map.createPane('gs-before').style.zIndex = '420';
    map.createPane('gs-after').style.zIndex = '410';
    gs.fitBox(map, cfg.bounds, 14);

    panel.hidden = false;
    var status = el('p', { id: 'gs-status', class: 'gs-muted', text: '载入方案与对比… loading the plan and the comparison' });
    panel.appendChild(el('header', {}, [el('h1', { id: 'gs-plan-title', text: cfg.title }), gs.userBadge(me)]));
    panel.appendChild(status);

    Promise.all([
      gs.api(cfg, '/v1/plans/' + cfg.planId),
      gs.api(cfg, '/v1/plans/' + cfg.planId + '/review' + gs.query({ against: against })),
    ]).then(
      function (answers) {
        show(answers[0], answers[1]);
      },
      function (err) {
        status.textContent = '无法载入：' + err.message;
        status.className = 'gs-error';
        status.id = 'gs-error';
      }
    );

    function show(plan, review) {
      document.getElementById('gs-plan-title').textContent =
        '方案 ' + plan.id + ' ' + (plan.name || '') + '（' + plan.status + '，v' + plan.version + '）';
      status.textContent = '对比方案 ' + review.against_plan_id + ' compared with plan ' + review.against_plan_id;
      review.changed_grids.forEach(function (g) {
        state.change[g.code] = g.change;
        (state.byCommunity[g.community_code] = state.byCommunity[g.community_code] || []).push(g.bbox);
      });

      // ---- the two plans as tile layers: the draft filled by change, today's dashed on top
      function afterStyle(p) {
        var change = state.change[p.code];
        if (change === 'added' || change === 'reshaped') {
          return { fill: true, fillColor: CHANGE[change].colour, fillOpacity: 0.45, color: CHANGE[change].colour, weight: 2 };
        }
        return { fill: true, fillColor: '#ffffff', fillOpacity: 0.05, color: '#4d4d4d', weight: 0.8 };
      }
      function beforeStyle(p) {
        var change = state.change[p.code];
        if (change === 'removed' || change === 'reshaped') {
          return { fill: false, color: CHANGE[change].colour, weight: 2.5, dashArray: '6 4' };
        }
        return { fill: false, color: '#7f7f7f', weight: 0.8, dashArray: '3 3' };
      }
      var afterOpts = { pane: 'gs-after', vectorTileLayerStyles: { responsibility_grids: afterStyle } };
      var beforeOpts = { pane: 'gs-before', vectorTileLayerStyles: { responsibility_grids: beforeStyle } };
      Promise.all([
        gs.vectorLayer(cfg, 'responsibility_grids', { plan: plan.id }, afterOpts),
        gs.vectorLayer(cfg, 'responsibility_grids', { plan: review.against_plan_id }, beforeOpts),
      ]).then(
        function (layers) {
          var after = layers[0];
          var before = layers[1];
          after.on('click', function (e) { gridPopup(e, '草案 draft'); });
          before.on('click', function (e) { gridPopup(e, '现行 current'); });
          after.addTo(map);
          before.addTo(map);
          var control = L.control.layers(cfg.baseLayer ? { '底图 base map': window[cfg.baseLayer] } : {}, {}, { collapsed: false }).addTo(map);
          control.addOverlay(after, '草案方案 ' + plan.id + ' draft');
          control.addOverlay(before, '现行方案 ' + review.against_plan_id + ' current (dashed)');
          page.layers = { after: after, before: before };
          setupBeside(review, beforeStyle);
          page.ready = true;
        },
        function (err) {
          status.textContent = '图层错误：' + err.message;
          status.className = 'gs-error';
        }
      );
      if (review.bounds) gs.fitBox(map, review.bounds, 16);

      // ---- the panel: legend, counts, quality, worst communities, changed grids
      var legend = el('section', { id: 'gs-legend' }, [el('h2', { text: '图例 Legend' })]);
      ['added', 'reshaped'].forEach(function (k) {
        legend.appendChild(el('div', { class: 'gs-legend-row' }, [el('span', { class: 'gs-swatch', style: 'background:' + CHANGE[k].colour }), '草案 ' + CHANGE[k].name]));
      });
      legend.appendChild(el('div', { class: 'gs-legend-row' }, [el('span', { class: 'gs-swatch-dashed', style: 'border-color:' + CHANGE.removed.colour }), '现行 ' + CHANGE.removed.name]));
      legend.appendChild(el('div', { class: 'gs-legend-row' }, [el('span', { class: 'gs-swatch-dashed', style: 'border-color:' + CHANGE.reshaped.colour }), '现行 调整前 before reshaping']));
      legend.appendChild(el('div', { class: 'gs-legend-row' }, [el('span', { class: 'gs-swatch-dashed', style: 'border-color:#7f7f7f' }), '现行 未变 unchanged']));
      var overButton = el('button', { type: 'button', id: 'gs-mode-over', 'aria-pressed': 'true', text: '叠加 over' });
      var besideButton = el('button', { type: 'button', id: 'gs-mode-beside', 'aria-pressed': 'false', text: '并排 beside' });
      legend.appendChild(el('div', { class: 'gs-mode' }, [overButton, ' ', besideButton]));
      panel.appendChild(legend);
      state.buttons = { over: overButton, beside: besideButton };

      var grids = review.responsibility_grids || {};
      var figures = [
        ['责任网格 新增 added', grids.added],
        ['责任网格 调整 reshaped', grids.reshaped],
        ['责任网格 撤销 removed', grids.removed],
        ['责任网格 未变 unchanged', grids.unchanged],
        ['单元网格 新增/调整/撤销', [review.unit_grids.added, review.unit_grids.reshaped, review.unit_grids.removed].join(' / ')],
        ['部件换属 components changing owner', review.components_changing_owner],
        ['在办案件换属 open cases', review.open_cases_changing_owner],
        ['户数换属 households', review.households_changing_owner],
        ['工作站网格变化 stations', review.stations_changing_grids],
      ];
      panel.appendChild(el('section', { id: 'gs-changes' }, [el('h2', { text: '变化 Changes' }), figureList(figures, 'gs-change-figures')]));

      var q = plan.quality || {};
      var qualityRows = [
        ['社区数 communities', q.communities],
        ['多网格社区 multi-grid', q.multi_grid_communities],
        ['最大/最小 最差 worst max/min', fmt(q.max_min_ratio_worst, 2)],
        ['最大/最小 中位 median', fmt(q.max_min_ratio_median, 2)],
        ['最大/最小 P90', fmt(q.max_min_ratio_p90, 2)],
        ['变异系数 中位 CV median', fmt(q.cv_median, 3)],
        ['超过 1.3 的社区 over 1.3', q.communities_over_1_3],
        ['单元不允许 1.3 units do not allow 1.3', q.units_do_not_allow_1_3],
        ['单元允许却超过 1.3 over 1.3 where units allow', q.over_1_3_where_units_allow],
        ['紧凑度 Polsby-Popper 最小值中位', fmt(q.polsby_popper_min_median, 2)],
        ['超出户数范围 outside bounds', q.outside_bounds],
        ['全部连通 all contiguous', fmt(q.all_contiguous)],
        ['全部嵌套 all nested', fmt(q.all_nested)],
        ['全覆盖 covers all', fmt(q.covers_all)],
        ['沿旧网线 net lines followed (median)', fmt(q.net_boundary_followed_share_median, 2)],
      ];
      panel.appendChild(el('section', { id: 'gs-quality' }, [el('h2', { text: '质量报告 Quality report' }), figureList(qualityRows, 'gs-quality-figures')]));

      var worst = (q.per_community || []).slice().sort(function (a, b) {
        var ra = a.max_min_ratio === null || a.max_min_ratio === undefined ? Infinity : a.max_min_ratio;
        var rb = b.max_min_ratio === null || b.max_min_ratio === undefined ? Infinity : b.max_min_ratio;
        return rb - ra;
      });
      var table = el('table', { id: 'gs-worst' }, [
        el('thead', {}, [el('tr', {}, [el('th', { text: '社区' }), el('th', { class: 'num', text: '网格' }), el('th', { class: 'num', text: '最大/最小' }), el('th', { class: 'num', text: '下界' }), el('th', { class: 'num', text: 'CV' })])]),
      ]);
      var tbody = el('tbody');
      worst.slice(0, WORST_ROWS).forEach(function (c) {
        var boxes = state.byCommunity[c.community_code];
        var row = el('tr', { class: boxes ? 'gs-click' : null, 'data-community': c.community_code, title: boxes ? '定位到变化 zoom to the changes' : null }, [
          el('td', { text: c.community_code }),
          el('td', { class: 'num', text: fmt(c.n_groups) }),
          el('td', { class: 'num', text: fmt(c.max_min_ratio, 2) }),
          el('td', { class: 'num', text: fmt(c.ratio_bound, 2) }),
          el('td', { class: 'num', text: fmt(c.cv, 3) }),
        ]);
        if (boxes) row.addEventListener('click', function () { gs.fitBox(map, union(boxes), 17); });
        tbody.appendChild(row);
      });
      table.appendChild(tbody);
      panel.appendChild(
        el('section', {}, [
          el('h2', { text: '最不均衡的社区 Least balanced communities' + (worst.length > WORST_ROWS ? '（前 ' + WORST_ROWS + ' / ' + worst.length + '）' : '') }),
          table,
        ])
      );

      var changedList = el('table', { id: 'gs-changed-grids' }, [
        el('thead', {}, [el('tr', {}, [el('th', { text: '网格' }), el('th', { text: '变化' }), el('th', { class: 'num', text: '户数 前→后' })])]),
      ]);
      var changedBody = el('tbody');
      review.changed_grids.slice(0, 200).forEach(function (g) {
        var row = el('tr', { class: g.bbox ? 'gs-click' : null, 'data-code': g.code }, [
          el('td', {}, [el('code', { text: g.code })]),
          el('td', { style: 'color:' + CHANGE[g.change].colour, text: CHANGE[g.change].name }),
          el('td', { class: 'num', text: fmt(g.households_before) + '→' + fmt(g.households_after) }),
        ]);
        if (g.bbox) row.addEventListener('click', function () { gs.fitBox(map, g.bbox, 17); });
        changedBody.appendChild(row);
      });
      changedList.appendChild(changedBody);
      var csv = el('button', { type: 'button', class: 'gs-link', id: 'gs-csv', text: '下载全部变化 CSV' });
      csv.addEventListener('click', function () {
        gs.api(cfg, '/v1/plans/' + plan.id + '/compare' + gs.query({ against: against, format: 'csv' }), { raw: true, headers: { Accept: 'text/csv' } })
          .then(function (response) { return response.blob(); })
          .then(function (blob) {
            var a = el('a', { href: URL.createObjectURL(blob), download: 'plan-' + plan.id + '-compare.csv' });
            document.body.appendChild(a);
            a.click();
            a.remove();
          });
      });
      panel.appendChild(
        el('section', {}, [
          el('h2', { text: '变化的网格 Changed grids（' + review.changed_grids.length + '）' }),
          changedList,
          review.changed_grids.length > 200 ? el('p', { class: 'gs-muted', text: '只列出前 200 个。' }) : null,
          csv,
        ])
      );
    }

    function figureList(rows, id) {
      var box = el('div', { class: 'gs-figures', id: id });
      rows.forEach(function (r) {
        box.appendChild(el('span', { text: r[0] }));
        box.appendChild(el('span', { class: 'num', text: fmt(r[1]) }));
      });
      return box;
    }

    function union(boxes) {
      var present = boxes.filter(Boolean);
      if (!present.length) return null;
      return [
        Math.min.apply(null, present.map(function (b) { return b[0]; })),
        Math.min.apply(null, present.map(function (b) { return b[1]; })),
        Math.max.apply(null, present.map(function (b) { return b[2]; })),
        Math.max.apply(null, present.map(function (b) { return b[3]; })),
      ];
    }

    function gridPopup(e, which) {
      var p = e.layer.properties;
      var change = state.change[p.code];
      L.popup()
        .setLatLng(e.latlng)
        .setContent(
          el('div', { class: 'gs-popup', id: 'gs-review-popup' }, [
            el('h3', { text: which + ' ' + p.code }),
            gs.rows([
              ['变化 change', change ? CHANGE[change].name : '未变 unchanged'],
              ['社区 community', (p.community_name || '') + ' ' + (p.community_code || '')],
              ['户数 households', p.households],
              ['工作量 workload', p.workload],
              ['网格员 worker', p.worker_name],
            ]),
          ])
        )
        .openOn(map);
    }

    /* Beside: a second map on the right shows the plan of today alone, the main map the draft alone;
       both move together. Over: both plans on one map (the default). */
    function setupBeside(review, beforeStyle) {
      var second = null;
      var syncing = false;
      function follow(from, to) {
        if (syncing || !to) return;
        syncing = true;
        to.setView(from.getCenter(), from.getZoom(), { animate: false });
        syncing = false;
      }
      map.on('move', function () { follow(map, second); });
      state.buttons.beside.addEventListener('click', function () {
        if (state.mode === 'beside') return;
        state.mode = 'beside';
        state.buttons.beside.setAttribute('aria-pressed', 'true');
        state.buttons.over.setAttribute('aria-pressed', 'false');
        document.body.classList.add('gs-beside');
        map.invalidateSize();
        map.removeLayer(page.layers.before);
        var box = el('div', { id: 'gs-map-before' });
        document.body.appendChild(box);
        second = L.map(box, { zoomControl: false, attributionControl: false }).setView(map.getCenter(), map.getZoom());
        second.createPane('gs-before').style.zIndex = '420';
        var base = cfg.baseLayer && window[cfg.baseLayer];
        if (base) L.tileLayer(base._url, base.options).addTo(second);
        box.appendChild(el('div', { class: 'gs-map-label', text: '现行方案 ' + review.against_plan_id }));
        map.getContainer().appendChild(el('div', { class: 'gs-map-label', id: 'gs-label-after', text: '草案方案 ' + cfg.planId }));
        gs.vectorLayer(cfg, 'responsibility_grids', { plan: review.against_plan_id }, {
          pane: 'gs-before',
          interactive: false,
          vectorTileLayerStyles: { responsibility_grids: beforeStyle },
        }).then(function (vg) { vg.addTo(second); });
        second.on('move', function () { follow(second, map); });
        page.second = second;
      });
      state.buttons.over.addEventListener('click', function () {
        if (state.mode === 'over') return;
        state.mode = 'over';
        state.buttons.over.setAttribute('aria-pressed', 'true');
        state.buttons.beside.setAttribute('aria-pressed', 'false');
        document.body.classList.remove('gs-beside');
        if (second) {
          var gone = second;
          second = null;
          gone.remove();
        }
        var box = document.getElementById('gs-map-before');
        if (box) box.remove();
        var label = document.getElementById('gs-label-after');
        if (label) label.remove();
        map.invalidateSize();
        page.layers.before.addTo(map);
      });
    }
  }
})();
