/* The field page (/field): where am I, whose grid is it, whom do I call, which components are near. */
(function () {
  'use strict';
  var gs = window.gridsvc;
  var el = gs.el;

  gs.startField = function (map, cfg) {
    gs.patchVectorGrid();
    var panel = document.getElementById('gs-panel');
    panel.hidden = true;
    gs.signIn(cfg, cfg.roles, function (me) {
      build(map, cfg, me, panel);
    });
  };

  function build(map, cfg, me, panel) {
    var page = (window.gridsvcPage = { map: map, answers: 0, ready: false });
    map.createPane('gs-grids').style.zIndex = '410';
    map.createPane('gs-points').style.zIndex = '450';
    map.createPane('gs-here').style.zIndex = '460';
    gs.fitBox(map, cfg.bounds, 14);

    var locateButton = el('button', { type: 'button', id: 'gs-field-locate', text: '定位 我的位置' });
    var classSelect = el('select', { id: 'gs-field-class', 'aria-label': '部件类别' }, [el('option', { value: '0118', text: '0118 路灯' })]);
    var status = el('p', { id: 'gs-field-status', class: 'gs-muted', text: '正在获取位置…或点击地图选点。Tap the map to pick a point.' });
    var answer = el('div', { id: 'gs-answer' });
    var nearby = el('div', { id: 'gs-nearby' });
    panel.appendChild(el('header', {}, [el('h1', { text: cfg.title }), gs.userBadge(me)]));
    panel.appendChild(el('div', { class: 'gs-actions' }, [locateButton, classSelect]));
    panel.appendChild(status);
    panel.appendChild(answer);
    panel.appendChild(nearby);
    panel.hidden = false;
    map.invalidateSize();

    var here = L.layerGroup().addTo(map);
    var componentMarks = L.layerGroup().addTo(map);
    var last = null; // {lon, lat, crs}

    gs.vectorLayer(cfg, 'responsibility_grids', {}, {
      pane: 'gs-grids',
      interactive: false,
      vectorTileLayerStyles: { responsibility_grids: { weight: 1.5, color: '#3f51b5', fill: true, fillColor: '#3f51b5', fillOpacity: 0.06 } },
    }).then(function (vg) { vg.addTo(map); }, function () {});
    gs.vectorLayer(cfg, 'stations', {}, {
      pane: 'gs-points',
      interactive: false,
      vectorTileLayerStyles: { stations: { radius: 6, fill: true, fillColor: '#1a7f37', fillOpacity: 1, color: '#fff', weight: 2 } },
    }).then(function (vg) { vg.addTo(map); }, function () {});

    gs.api(cfg, '/v1/component-classes').then(function (classes) {
      gs.clear(classSelect);
      classes.forEach(function (k) {
        classSelect.appendChild(el('option', { value: k.code, text: k.code + ' ' + k.name_zh, selected: k.code === '0118' }));
      });
    });
    classSelect.addEventListener('change', function () {
      if (last) findNearby(last);
    });

    function usePosition() {
      if (!navigator.geolocation) {
        status.textContent = '此浏览器不能定位：请点击地图选点。';
        return;
      }
      status.textContent = '正在获取位置… locating';
      navigator.geolocation.getCurrentPosition(
        function (pos) {
          // The Geolocation API answers in WGS 84 (W3C Geolocation), whatever map app the phone has.
          var accuracy = Math.round(pos.coords.accuracy || 0);
          ask({ lon: pos.coords.longitude, lat: pos.coords.latitude, crs: 'wgs84' }, '设备定位 GPS ±' + accuracy + ' m');
        },
        function (err) {
          status.textContent = '无法获取位置（' + err.message + '）：请点击地图选点。';
        },
        { enableHighAccuracy: true, timeout: 15000, maximumAge: 30000 }
      );
    }
    locateButton.addEventListener('click', usePosition);

    map.on('click', function (e) {
      ask({ lon: e.latlng.lng, lat: e.latlng.lat, crs: 'wgs84' }, '地图选点 tapped point');
    });

    function ask(point, source) {
      last = point;
      status.textContent = source + '：' + point.lon.toFixed(6) + ', ' + point.lat.toFixed(6) + (point.crs !== 'wgs84' ? ' (' + point.crs + ')' : '');
      gs.clear(answer).appendChild(el('p', { class: 'gs-muted', text: '查询中… asking' }));
      gs.api(cfg, '/v1/locate' + gs.query({ lon: point.lon, lat: point.lat, crs: point.crs })).then(
        function (located) {
          showAnswer(located);
          var at = [located.point.lat, located.point.lon];
          here.clearLayers();
          L.circleMarker(at, { pane: 'gs-here', radius: 8, color: '#fff', weight: 3, fillColor: '#d32f2f', fillOpacity: 1 }).addTo(here);
          map.setView(at, Math.max(map.getZoom(), 17), { animate: false });
          findNearby(point);
        },
        function (err) {
          gs.clear(answer).appendChild(
            el('p', { class: 'gs-error', id: 'gs-answer-error', text: err.status === 404 ? '该位置不在' + cfg.cityName + '范围内。' : '查询失败：' + err.message })
          );
          gs.clear(nearby);
        }
      );
    }

    function showAnswer(a) {
      gs.clear(answer);
      if (a.near_boundary) {
        // Candidates are unit grids; a worker wants the other owners: one line per responsibility grid.
        var nearestOf = {};
        (a.candidates || []).forEach(function (c) {
          var owner = c.responsibility_grid_code || c.unit_grid_code;
          if (!(owner in nearestOf) || c.distance_m < nearestOf[owner]) nearestOf[owner] = c.distance_m;
        });
        var others = Object.keys(nearestOf).map(function (owner) {
          return el('li', {}, [owner + '（' + nearestOf[owner] + ' m）']);
        });
        answer.appendChild(
          el('div', { class: 'gs-warning', id: 'gs-boundary-warning', role: 'alert' }, [
            el('b', { text: '⚠ 靠近网格边界' }),
            '（' + a.boundary_distance_m + ' m）：归属可能是相邻网格，请现场确认。Near a grid boundary: confirm the owner.',
            el('ul', {}, others),
          ])
        );
      } else if (a.how !== 'inside') {
        answer.appendChild(el('div', { class: 'gs-warning', id: 'gs-how-warning' }, [(a.notes || []).join('；')]));
      }
      var r = a.responsibility_grid;
      var s = a.station;
      var worker = r && r.worker;
      answer.appendChild(
        el('div', { class: 'gs-card' }, [
          gs.rows([
            ['责任网格', r ? el('span', {}, [el('code', { id: 'gs-grid-code', text: r.code }), ' ' + (r.name || '')]) : '（无）'],
            ['网格员', worker ? el('span', {}, [(worker.name || '') + ' ', worker.phone ? el('a', { id: 'gs-worker-call', href: gs.telHref(worker.phone), text: worker.phone }) : null]) : null],
            ['单元网格', a.unit_grid ? el('code', { id: 'gs-unit-code', text: a.unit_grid.code }) : null],
            ['社区', a.community ? a.community.name + ' ' + a.community.code : null],
            ['街道', a.street ? a.street.name : null],
            ['区县', a.district ? a.district.name : null],
            ['工作站', s ? s.name + (s.distance_m !== null ? '（' + Math.round(s.distance_m) + ' m）' : '') : null],
          ]),
          s && s.phone
            ? el('p', {}, [el('a', { id: 'gs-station-call', class: 'gs-tel', href: gs.telHref(s.phone), text: '拨打工作站 ' + s.phone })])
            : null,
          a.plan ? el('p', { class: 'gs-muted', text: '方案 ' + a.plan.name + '（' + a.plan.status + '）' }) : null,
        ])
      );
      page.answers += 1;
      page.last = a;
    }

    function findNearby(point) {
      var code = classSelect.value || '0118';
      gs.clear(nearby).appendChild(el('p', { class: 'gs-muted', text: '查找附近部件…' }));
      gs.api(cfg, '/v1/components/nearest' + gs.query({ lon: point.lon, lat: point.lat, crs: point.crs, class: code, limit: 5 })).then(
        function (found) {
          gs.clear(nearby);
          componentMarks.clearLayers();
          nearby.appendChild(el('h2', { text: '附近' + found.class.name + '（' + found.within_m + ' m 内）' }));
          if (!found.components.length) {
            nearby.appendChild(el('p', { class: 'gs-muted', id: 'gs-components-none', text: '附近没有此类部件。' }));
            return;
          }
          // Show the point and its nearest few together.
          var view = [[found.point.lat, found.point.lon]].concat(
            found.components.slice(0, 3).map(function (c) { return [c.lat, c.lon]; })
          );
          map.fitBounds(L.latLngBounds(view).pad(0.2), { maxZoom: 18, animate: false });
          var list = el('ul', { class: 'gs-components', id: 'gs-components' });
          found.components.forEach(function (c) {
            list.appendChild(
              el('li', { 'data-code': c.code }, [
                el('span', {}, [el('code', { text: c.code }), ' ' + (c.name || '') + ' ' + (gs.COMPONENT_STATUS_NAMES[c.status] || c.status)]),
                el('span', { text: Math.round(c.distance_m) + ' m' }),
              ])
            );
            L.circleMarker([c.lat, c.lon], { pane: 'gs-here', radius: 5, color: '#fff', weight: 1, fillColor: '#1f78b4', fillOpacity: 1 })
              .bindTooltip(c.code)
              .addTo(componentMarks);
          });
          nearby.appendChild(list);
          page.ready = true;
        },
        function (err) {
          gs.clear(nearby).appendChild(el('p', { class: 'gs-error', text: '附近部件查询失败：' + err.message }));
        }
      );
    }

    var params = gs.params();
    if (params.get('lon') && params.get('lat')) {
      ask({ lon: Number(params.get('lon')), lat: Number(params.get('lat')), crs: params.get('crs') || 'wgs84' }, '链接中的位置 point from the link');
    } else {
      usePosition();
    }
  }
})();
