"""Who may connect and what they may do: the password file (``passwd``), the authenticator that
reads it (``authn``), the ACL file and its authorizer (``acl``), and their settings (``settings``).

They plug into the broker core's access seams (``mqhook.broker.auth``).
"""
