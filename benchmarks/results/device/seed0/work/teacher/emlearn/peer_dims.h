#ifndef PEER_DIMS_H
#define PEER_DIMS_H
#define PEER_OBS_DIM 4
#define PEER_ACT_DIM 1
#define PEER_OUT_SCALE {3.0f}
#define PEER_OUT_OFFSET {0.0f}
#endif
