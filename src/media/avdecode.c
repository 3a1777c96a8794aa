/* The C side of HomeSec's video decoder (src/media/codec.rs): a libavcodec
 * H.264 / H.265 decoder behind five functions, so that the Rust side needs no
 * FFmpeg struct layouts. One decoder per clip or camera, used from one thread. */
#include <string.h>
#include <libavcodec/avcodec.h>
#include <libavutil/error.h>
#include <libavutil/pixdesc.h>

typedef struct hs_decoder {
    AVCodecContext *ctx;
    AVPacket *pkt;
    AVFrame *frame;
} hs_decoder;

typedef struct hs_picture {
    const uint8_t *y, *u, *v;
    int y_stride, uv_stride, width, height;
    /* 0 for 8-bit 4:2:0, else the pixel format's name is in `format`. */
    int unsupported;
    char format[32];
} hs_picture;

void hs_decoder_free(hs_decoder *d) {
    if (!d) return;
    avcodec_free_context(&d->ctx);
    av_packet_free(&d->pkt);
    av_frame_free(&d->frame);
    av_free(d);
}

/* codec: 0 = H.264, 1 = H.265. Returns NULL (and a reason in err) on failure. */
hs_decoder *hs_decoder_new(int codec, char *err, size_t errlen) {
    const AVCodec *c = avcodec_find_decoder(codec == 1 ? AV_CODEC_ID_HEVC : AV_CODEC_ID_H264);
    if (!c) { snprintf(err, errlen, "libavcodec was built without this decoder"); return NULL; }
    hs_decoder *d = av_mallocz(sizeof *d);
    if (!d) { snprintf(err, errlen, "out of memory"); return NULL; }
    d->ctx = avcodec_alloc_context3(c);
    d->pkt = av_packet_alloc();
    d->frame = av_frame_alloc();
    if (!d->ctx || !d->pkt || !d->frame) { hs_decoder_free(d); snprintf(err, errlen, "out of memory"); return NULL; }
    /* One thread: a camera's decoder runs on its own worker thread already. */
    d->ctx->thread_count = 1;
    /* Film grain is described, never painted on: motion and the detector want
     * the picture as coded. */
    d->ctx->export_side_data |= AV_CODEC_EXPORT_DATA_FILM_GRAIN;
    int r = avcodec_open2(d->ctx, c, NULL);
    if (r < 0) { av_strerror(r, err, errlen); hs_decoder_free(d); return NULL; }
    return d;
}

void hs_error_text(int code, char *out, size_t len) { av_strerror(code, out, len); }

/* Feeds one Annex-B access unit (data NULL: end of stream, drain). Returns 0,
 * or a negative AVERROR. EAGAIN never happens here: every picture is taken
 * with hs_decoder_receive before the next send. The packet has no buffer of
 * its own, so libavcodec copies it into a padded one: no padding is needed
 * here. */
int hs_decoder_send(hs_decoder *d, const uint8_t *data, size_t len) {
    if (!data) return avcodec_send_packet(d->ctx, NULL);
    if (len > INT32_MAX - AV_INPUT_BUFFER_PADDING_SIZE) return AVERROR(EINVAL);
    d->pkt->data = (uint8_t *)data;
    d->pkt->size = (int)len;
    int r = avcodec_send_packet(d->ctx, d->pkt);
    d->pkt->data = NULL;
    d->pkt->size = 0;
    return r;
}

/* The next decoded picture: 1 with `out` filled (valid until the next call),
 * 0 when none is ready, or a negative AVERROR. */
int hs_decoder_receive(hs_decoder *d, hs_picture *out) {
    int r = avcodec_receive_frame(d->ctx, d->frame);
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
    if (r < 0) return r;
    AVFrame *f = d->frame;
    memset(out, 0, sizeof *out);
    out->width = f->width;
    out->height = f->height;
    if (f->format != AV_PIX_FMT_YUV420P && f->format != AV_PIX_FMT_YUVJ420P) {
        const char *name = av_get_pix_fmt_name(f->format);
        out->unsupported = 1;
        snprintf(out->format, sizeof out->format, "%s", name ? name : "unknown");
        return 1;
    }
    out->y = f->data[0];
    out->u = f->data[1];
    out->v = f->data[2];
    out->y_stride = f->linesize[0];
    out->uv_stride = f->linesize[1];
    return 1;
}
