/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_HTTP_SERVER_INT_H
#define NB_HTTP_SERVER_INT_H

/*
 * Shared by http/server.c (HTTP/1.1) and http/h2.c (HTTP/2) only: the server object both kinds
 * of connection hang off, and the HTTP/2 side of the http_req functions. server.c's http_req_*
 * and http_resp_* check req->_h2 and hand HTTP/2 requests to the h2_req_* functions below, so
 * the handler never knows which protocol a request came over.
 */

#include "http/server.h"

struct h2_conn;

struct http_server {
    struct nb_loop *loop;
    struct http_server_opts opts;
    struct http_handler handler;
    struct http_conn *conns;  /* every live HTTP/1.1 connection */
    struct h2_conn *h2_conns; /* every live HTTP/2 connection */
    uint32_t nconns;          /* both kinds */
    bool draining;
    struct http_server_stats st;
};

/* server.c calls these for every HTTP/2 connection. */
void h2_server_drain(struct http_server *srv);
void h2_server_free_all(struct http_server *srv);

/* The http_req API for HTTP/2 requests (req->_h2 != NULL); same contracts as server.h. */
void h2_req_read_body(struct http_req *req);
void h2_req_pause_body(struct http_req *req, bool paused);
int h2_resp_head(struct http_req *req, int status, const struct http_hdrs *hdrs,
                 int64_t content_length);
int h2_resp_body(struct http_req *req, const void *data, size_t len);
bool h2_resp_write_full(const struct http_req *req);
void h2_resp_end_trailers(struct http_req *req, const struct http_hdrs *trailers);
void h2_resp_abort(struct http_req *req);
void h2_resp_close_after(struct http_req *req);

#endif
