/* gridsvc pages: sign-in, API calls, vector tile layers, small DOM helpers. No framework, no CDN. */
(function () {
  'use strict';

  var KEY_ITEM = 'gridsvc.apiKey';
  var gs = (window.gridsvc = window.gridsvc || {});

  // A key given once as ?key=... is kept for this tab only (sessionStorage) and taken out of the
  // address bar at once, before any other request: it must not stay in the history, a bookmark or a
  // Referer header. Runs when this file loads, in the page head.
  (function takeKeyFromAddress() {
    var url = new URL(window.location.href);
    var key = url.searchParams.get('key');
    if (key) {
      sessionStorage.setItem(KEY_ITEM, key.trim());
      url.searchParams.delete('key');
      window.history.replaceState(null, '', url.pathname + url.search + url.hash);
    }
  })();

  gs.key = function () {
    return sessionStorage.getItem(KEY_ITEM);
  };
  gs.forgetKey = function () {
    sessionStorage.removeItem(KEY_ITEM);
  };

  /* el('div', {class: 'x', onclick: fn}, ['text', child]): text always goes in as text, never as HTML,
     so names and notes from the database cannot inject markup. */
  gs.el = function (tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) return;
      if (name.slice(0, 2) === 'on') node.addEventListener(name.slice(2), value);
      else if (name === 'text') node.textContent = value;
      else node.setAttribute(name, value === true ? '' : value);
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child);
    });
    return node;
  };

  gs.clear = function (node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  };

  gs.params = function () {
    return new URL(window.location.href).searchParams;
  };

  function ApiError(status, title, detail) {
    this.status = status;
    this.message = detail || title || 'HTTP ' + status;
  }
  ApiError.prototype = Object.create(Error.prototype);
  gs.ApiError = ApiError;

  /* GET (or other) a JSON endpoint with the tab's key; rejects with ApiError carrying problem+json's detail. */
  gs.api = function (cfg, path, options) {
    var opts = options || {};
    var headers = Object.assign({ Accept: 'application/json' }, opts.headers || {});
    var key = opts.key || gs.key();
    if (key) headers['X-API-Key'] = key;
    return fetch(cfg.root + path, { method: opts.method || 'GET', headers: headers }).then(function (response) {
      var type = response.headers.get('content-type') || '';
      if (!response.ok) {
        var fail = function (body) {
          throw new ApiError(response.status, body && body.title, body && body.detail);
        };
        return type.indexOf('json') >= 0 ? response.json().then(fail, function () { fail(null); }) : fail(null);
      }
      if (opts.raw) return response;
      return response.json();
    });
  };

  gs.query = function (params) {
    var search = new URLSearchParams();
    Object.keys(params || {}).forEach(function (name) {
      var value = params[name];
      if (value === null || value === undefined || value === '' || value === false) return;
      (Array.isArray(value) ? value : [value]).forEach(function (v) { search.append(name, String(v)); });
    });
    var text = search.toString();
    return text ? '?' + text : '';
  };

  /* Vector tiles (GET /v1/tiles/{layer}/{z}/{x}/{y}.mvt). VectorGrid fetches with fetch(), so the key
     travels as the X-API-Key header, never in a tile URL (URLs end up in access logs). */
  gs.tileUrl = function (cfg, layer, params) {
    return cfg.root + '/v1/tiles/' + layer + '/{z}/{x}/{y}.mvt' + gs.query(params);
  };

  gs.tileJson = function (cfg, layer, params) {
    return gs.api(cfg, '/v1/tiles/' + layer + '.json' + gs.query(params));
  };

  /* A VectorGrid layer for one tile layer; its zoom range comes from the service's TileJSON, so a layer
     of millions of features is never asked for below the zoom where its tiles stay small. */
  gs.vectorLayer = function (cfg, layer, params, options) {
    return gs.tileJson(cfg, layer, params).then(function (tj) {
      var minzoom = typeof tj.minzoom === 'number' ? tj.minzoom : 0;
      var maxzoom = typeof tj.maxzoom === 'number' ? tj.maxzoom : 22;
      var opts = Object.assign(
        {
          rendererFactory: L.svg.tile,
          interactive: true,
          minZoom: minzoom,
          maxZoom: 22,
          maxNativeZoom: maxzoom,
          fetchOptions: { headers: { 'X-API-Key': gs.key() || '' } },
          vectorTileLayerStyles: {},
        },
        options || {}
      );
      var vg = L.vectorGrid.protobuf(gs.tileUrl(cfg, layer, params), opts);
      vg.gsLayer = layer;
      vg.gsMinZoom = minzoom;
      vg.gsFeatures = 0;
      vg.on('tileload', function (e) {
        var paths = e.tile.querySelectorAll('path').length;
        vg.gsFeatures += paths;
        gs.stats[layer] = (gs.stats[layer] || 0) + paths;
      });
      vg.on('load', function () {
        gs.loaded[layer] = (gs.loaded[layer] || 0) + 1;
      });
      return vg;
    });
  };

  // Counters the browser tests (and a curious engineer in the console) read: features drawn per layer,
  // and how many times each layer finished loading the tiles in view.
  gs.stats = {};
  gs.loaded = {};

  /* VectorGrid 1.3.0 on Leaflet 1.9: a clicked point feature has getLatLng() but no latlng, and
     Leaflet's event code calls it (Leaflet.VectorGrid issue #274 and #168). Make such features fall back
     to the mouse position, the way polygons already do. */
  gs.patchVectorGrid = function () {
    if (!L.VectorGrid || L.VectorGrid.prototype.gsPatched) return;
    var create = L.VectorGrid.prototype._createLayer;
    L.VectorGrid.include({
      gsPatched: true,
      _createLayer: function (feat, pxPerExtent, layerStyle) {
        var layer = create.call(this, feat, pxPerExtent, layerStyle);
        if (feat.type === 1) layer.getLatLng = null;
        return layer;
      },
    });
  };

  /* Sign-in: a key from ?key= (kept in sessionStorage) or typed into the form, checked with GET /v1/me;
     nothing but the form is shown until a key of one of ``roles`` is there. */
  gs.signIn = function (cfg, roles, onReady) {
    gs.timezone = cfg.timezone || null;
    var box = document.getElementById('gs-signin');
    function showForm(message) {
      gs.clear(box);
      box.hidden = false;
      var input = gs.el('input', {
        id: 'gs-key',
        type: 'password',
        autocomplete: 'current-password',
        placeholder: 'gs_xxxxxxxx_…',
        'aria-label': 'API key',
      });
      var form = gs.el('form', { id: 'gs-signin-form' }, [
        gs.el('h1', { text: cfg.title }),
        gs.el('p', { text: '请输入 API 密钥（' + roles.join(' / ') + ' 角色）。密钥只保存在本标签页，关闭即清除。' }),
        gs.el('p', { class: 'gs-muted', text: 'Sign in with an API key of role ' + roles.join(' or ') + '.' }),
        input,
        gs.el('button', { type: 'submit', id: 'gs-signin-button', text: '登录 Sign in' }),
        message ? gs.el('p', { class: 'gs-error', id: 'gs-signin-error', text: message }) : null,
      ]);
      form.addEventListener('submit', function (event) {
        event.preventDefault();
        var key = input.value.trim();
        if (!key) return;
        sessionStorage.setItem(KEY_ITEM, key);
        check();
      });
      box.appendChild(form);
      input.focus();
    }
    function check() {
      if (!gs.key()) {
        showForm(null);
        return;
      }
      gs.api(cfg, '/v1/me').then(
        function (me) {
          if (roles.indexOf(me.role) < 0) {
            gs.forgetKey();
            showForm('密钥 “' + me.name + '” 的角色是 ' + me.role + '，本页需要 ' + roles.join(' / ') + '。');
            return;
          }
          box.hidden = true;
          gs.clear(box);
          gs.me = me;
          onReady(me);
        },
        function (error) {
          gs.forgetKey();
          showForm(error.status === 401 ? '密钥无效或已吊销 (401)。' : '无法登录：' + error.message);
        }
      );
    }
    check();
  };

  gs.signOut = function () {
    gs.forgetKey();
    window.location.reload();
  };

  gs.userBadge = function (me) {
    return gs.el('div', { class: 'gs-user' }, [
      gs.el('span', { id: 'gs-user-name', text: me.name + ' · ' + me.role }),
      ' ',
      gs.el('button', { type: 'button', class: 'gs-link', onclick: gs.signOut, text: '退出' }),
    ]);
  };

  /* Without animation: a view set while Leaflet still animates an earlier one is undone when that
     animation ends (the page sets a first view, then the data's). */
  gs.fitBox = function (map, box, maxZoom) {
    if (!box) return;
    map.fitBounds([[box[1], box[0]], [box[3], box[2]]], { maxZoom: maxZoom || 18, animate: false });
  };

  /* A time in the city's own zone (GRIDSVC_TIMEZONE), whatever zone the browser is in: deadlines are
     the city's working hours. */
  gs.timezone = null;
  gs.formatTime = function (iso) {
    if (!iso) return '—';
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso;
    var parts = {};
    new Intl.DateTimeFormat('en-GB', {
      timeZone: gs.timezone || undefined,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    })
      .formatToParts(d)
      .forEach(function (p) { parts[p.type] = p.value; });
    return parts.year + '-' + parts.month + '-' + parts.day + ' ' + parts.hour + ':' + parts.minute;
  };

  gs.STATUS_NAMES = {
    reported: '上报',
    registered: '立案',
    rejected: '不予立案',
    dispatched: '派遣',
    in_progress: '处置中',
    reported_back: '已反馈',
    verified: '已核查',
    closed: '结案',
    parked: '挂账',
  };
  gs.COMPONENT_STATUS_NAMES = {
    intact: '完好',
    damaged: '破损',
    missing: '丢失',
    occupied: '占用',
    abandoned: '废弃',
    removed: '移除',
  };

  /* A definition list of [label, value] rows; value may be a node. */
  gs.rows = function (pairs, id) {
    var dl = gs.el('dl', { class: 'gs-rows', id: id || null });
    pairs.forEach(function (pair) {
      if (pair[1] === undefined) return;
      dl.appendChild(gs.el('dt', { text: pair[0] }));
      var value = pair[1] === null || pair[1] === '' ? '—' : pair[1];
      dl.appendChild(typeof value === 'object' ? gs.el('dd', {}, [value]) : gs.el('dd', { text: String(value) }));
    });
    return dl;
  };

  // A tel: link dials what a person would: the digits, and a switchboard's extension (after 转) after a
  // pause (a comma), not glued to the number as one long wrong one.
  gs.telHref = function (phone) {
    return 'tel:' + String(phone).replace(/转/g, ',').replace(/[^0-9+,]/g, '');
  };

  gs.telLink = function (phone, label) {
    if (!phone) return null;
    return gs.el('a', { href: gs.telHref(phone), class: 'gs-tel', text: label || phone });
  };
})();
