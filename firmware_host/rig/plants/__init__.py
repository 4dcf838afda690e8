"""Plant models beyond the generic cart-pole: the rotary (Furuta) pendulum and its DC motor."""
