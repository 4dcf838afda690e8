#ifndef PEER_NET_H
#define PEER_NET_H
#include <eml_net.h>

#include <eml_net.h>
static const float peer_net_layer_0_biases[5] = { 0.729668f, -0.992621f, 0.067776f, 0.001973f, -0.772853f };
static const float peer_net_layer_0_weights[20] = { -0.000000f, -0.000000f, -1.626610f, 0.000000f, -0.000000f, 2.196033f, -0.184016f, -9.153479f, -0.000000f, -0.000000f, 3.913677f, -2.914502f, -2.087529f, -2.114819f, 0.022831f, -3.740015f, -0.000000f, -1.154401f, -0.914359f, 1.678299f };
static const float peer_net_layer_1_biases[4] = { 0.199781f, 0.381722f, 0.971338f, -0.091532f };
static const float peer_net_layer_1_weights[20] = { 0.237064f, 0.628950f, -0.000000f, -0.000620f, 0.621169f, -1.198174f, -1.718716f, 0.000468f, 1.365522f, 0.000000f, 0.000000f, 1.458624f, 0.169547f, 0.000000f, 0.000000f, 0.000000f, 0.000000f, -2.329274f, 0.000000f, 0.000000f };
static const float peer_net_layer_2_biases[1] = { -0.130800f };
static const float peer_net_layer_2_weights[4] = { -1.173043f, -0.379772f, 0.115589f, -0.559362f };
static float peer_net_buf1[5];
static float peer_net_buf2[5];
static const EmlNetLayer peer_net_layers[3] = { 
{ 5, 4, peer_net_layer_0_weights, peer_net_layer_0_biases, EmlNetActivationTanh }, 
{ 4, 5, peer_net_layer_1_weights, peer_net_layer_1_biases, EmlNetActivationTanh }, 
{ 1, 4, peer_net_layer_2_weights, peer_net_layer_2_biases, EmlNetActivationTanh } };
static EmlNet peer_net = { 3, peer_net_layers, peer_net_buf1, peer_net_buf2, 5 };

    int32_t
    peer_net_predict(const float *features, int32_t n_features)
    {
        return eml_net_predict(&peer_net, features, n_features);
    }
    

    int32_t
    peer_net_regress(const float *features, int32_t n_features, float *out, int32_t out_length)
    {
        return eml_net_regress(&peer_net, features, n_features, out, out_length);
    }
    

    float
    peer_net_regress1(const float *features, int32_t n_features)
    {
        return eml_net_regress1(&peer_net, features, n_features);
    }
    
#endif
