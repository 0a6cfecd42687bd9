/*
 * The PKCS#11 3.0 declarations that p11-kit 0.24's pkcs11.h (Debian 12)
 * lacks: the interface types of C_GetInterfaceList / C_GetInterface, the
 * new functions' types, CK_FUNCTION_LIST_3_0 and CK_EDDSA_PARAMS, with the layout of the
 * OASIS header (the 2.40 list, then the 3.0 functions in the standard's
 * order). keyward-pkcs11.so offers that list as the interface "PKCS 11"
 * version 3.0; a caller that wants its 3.0 functions includes this after
 * its pkcs11.h. A header that already has them is left to declare them:
 * CKF_INTERFACE_FORK_SAFE marks the interface types, and
 * CKR_OPERATION_CANCEL_FAILED the rest of PKCS#11 3.0.
 */
#ifndef KEYWARD_PKCS11_3_0_H
#define KEYWARD_PKCS11_3_0_H

#ifndef CKF_INTERFACE_FORK_SAFE
#define CKF_INTERFACE_FORK_SAFE 0x00000001UL
typedef struct CK_INTERFACE {
	CK_CHAR *pInterfaceName;
	CK_VOID_PTR pFunctionList;
	CK_FLAGS flags;
} CK_INTERFACE;
typedef CK_INTERFACE *CK_INTERFACE_PTR;
typedef CK_INTERFACE_PTR *CK_INTERFACE_PTR_PTR;
typedef CK_RV (*CK_C_GetInterfaceList)(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount);
typedef CK_RV (*CK_C_GetInterface)(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
				   CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags);
#endif

#ifndef CKR_OPERATION_CANCEL_FAILED
#define CKR_OPERATION_CANCEL_FAILED 0x00000202UL
#ifndef CKF_FIND_OBJECTS
#define CKF_FIND_OBJECTS 0x00000040UL /* C_SessionCancel's flag for a find operation */
#endif

/* CKM_EDDSA's optional parameter: phFlag for the prehash variant, a context for Ed25519ctx/Ed448. */
typedef struct CK_EDDSA_PARAMS {
	CK_BBOOL phFlag;
	CK_ULONG ulContextDataLen;
	CK_BYTE_PTR pContextData;
} CK_EDDSA_PARAMS;
typedef CK_EDDSA_PARAMS *CK_EDDSA_PARAMS_PTR;

typedef CK_RV (*CK_C_LoginUser)(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
				CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen);
typedef CK_RV (*CK_C_SessionCancel)(CK_SESSION_HANDLE hSession, CK_FLAGS flags);
/* C_Message{Encrypt,Decrypt,Sign,Verify}Init */
typedef CK_RV (*CK_C_MessageInit_3_0)(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey);
/* C_EncryptMessage, C_DecryptMessage */
typedef CK_RV (*CK_C_CryptMessage_3_0)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
				       CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pIn,
				       CK_ULONG ulInLen, CK_BYTE_PTR pOut, CK_ULONG_PTR pulOutLen);
/* C_EncryptMessageBegin, C_DecryptMessageBegin */
typedef CK_RV (*CK_C_CryptMessageBegin_3_0)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
					    CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen);
/* C_EncryptMessageNext, C_DecryptMessageNext */
typedef CK_RV (*CK_C_CryptMessageNext_3_0)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
					   CK_BYTE_PTR pIn, CK_ULONG ulInLen, CK_BYTE_PTR pOut, CK_ULONG_PTR pulOutLen,
					   CK_FLAGS flags);
/* C_Message{Encrypt,Decrypt,Sign,Verify}Final */
typedef CK_RV (*CK_C_MessageFinal_3_0)(CK_SESSION_HANDLE hSession);
/* C_SignMessage, C_SignMessageNext */
typedef CK_RV (*CK_C_SignMessage_3_0)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
				      CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
				      CK_ULONG_PTR pulSignatureLen);
/* C_SignMessageBegin, C_VerifyMessageBegin */
typedef CK_RV (*CK_C_MessageBegin_3_0)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen);
/* C_VerifyMessage, C_VerifyMessageNext */
typedef CK_RV (*CK_C_VerifyMessage_3_0)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
					CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
					CK_ULONG ulSignatureLen);

typedef struct CK_FUNCTION_LIST_3_0 {
	CK_VERSION version;
	CK_C_Initialize C_Initialize;
	CK_C_Finalize C_Finalize;
	CK_C_GetInfo C_GetInfo;
	CK_C_GetFunctionList C_GetFunctionList;
	CK_C_GetSlotList C_GetSlotList;
	CK_C_GetSlotInfo C_GetSlotInfo;
	CK_C_GetTokenInfo C_GetTokenInfo;
	CK_C_GetMechanismList C_GetMechanismList;
	CK_C_GetMechanismInfo C_GetMechanismInfo;
	CK_C_InitToken C_InitToken;
	CK_C_InitPIN C_InitPIN;
	CK_C_SetPIN C_SetPIN;
	CK_C_OpenSession C_OpenSession;
	CK_C_CloseSession C_CloseSession;
	CK_C_CloseAllSessions C_CloseAllSessions;
	CK_C_GetSessionInfo C_GetSessionInfo;
	CK_C_GetOperationState C_GetOperationState;
	CK_C_SetOperationState C_SetOperationState;
	CK_C_Login C_Login;
	CK_C_Logout C_Logout;
	CK_C_CreateObject C_CreateObject;
	CK_C_CopyObject C_CopyObject;
	CK_C_DestroyObject C_DestroyObject;
	CK_C_GetObjectSize C_GetObjectSize;
	CK_C_GetAttributeValue C_GetAttributeValue;
	CK_C_SetAttributeValue C_SetAttributeValue;
	CK_C_FindObjectsInit C_FindObjectsInit;
	CK_C_FindObjects C_FindObjects;
	CK_C_FindObjectsFinal C_FindObjectsFinal;
	CK_C_EncryptInit C_EncryptInit;
	CK_C_Encrypt C_Encrypt;
	CK_C_EncryptUpdate C_EncryptUpdate;
	CK_C_EncryptFinal C_EncryptFinal;
	CK_C_DecryptInit C_DecryptInit;
	CK_C_Decrypt C_Decrypt;
	CK_C_DecryptUpdate C_DecryptUpdate;
	CK_C_DecryptFinal C_DecryptFinal;
	CK_C_DigestInit C_DigestInit;
	CK_C_Digest C_Digest;
	CK_C_DigestUpdate C_DigestUpdate;
	CK_C_DigestKey C_DigestKey;
	CK_C_DigestFinal C_DigestFinal;
	CK_C_SignInit C_SignInit;
	CK_C_Sign C_Sign;
	CK_C_SignUpdate C_SignUpdate;
	CK_C_SignFinal C_SignFinal;
	CK_C_SignRecoverInit C_SignRecoverInit;
	CK_C_SignRecover C_SignRecover;
	CK_C_VerifyInit C_VerifyInit;
	CK_C_Verify C_Verify;
	CK_C_VerifyUpdate C_VerifyUpdate;
	CK_C_VerifyFinal C_VerifyFinal;
	CK_C_VerifyRecoverInit C_VerifyRecoverInit;
	CK_C_VerifyRecover C_VerifyRecover;
	CK_C_DigestEncryptUpdate C_DigestEncryptUpdate;
	CK_C_DecryptDigestUpdate C_DecryptDigestUpdate;
	CK_C_SignEncryptUpdate C_SignEncryptUpdate;
	CK_C_DecryptVerifyUpdate C_DecryptVerifyUpdate;
	CK_C_GenerateKey C_GenerateKey;
	CK_C_GenerateKeyPair C_GenerateKeyPair;
	CK_C_WrapKey C_WrapKey;
	CK_C_UnwrapKey C_UnwrapKey;
	CK_C_DeriveKey C_DeriveKey;
	CK_C_SeedRandom C_SeedRandom;
	CK_C_GenerateRandom C_GenerateRandom;
	CK_C_GetFunctionStatus C_GetFunctionStatus;
	CK_C_CancelFunction C_CancelFunction;
	CK_C_WaitForSlotEvent C_WaitForSlotEvent;
	/* PKCS#11 3.0 */
	CK_C_GetInterfaceList C_GetInterfaceList;
	CK_C_GetInterface C_GetInterface;
	CK_C_LoginUser C_LoginUser;
	CK_C_SessionCancel C_SessionCancel;
	CK_C_MessageInit_3_0 C_MessageEncryptInit;
	CK_C_CryptMessage_3_0 C_EncryptMessage;
	CK_C_CryptMessageBegin_3_0 C_EncryptMessageBegin;
	CK_C_CryptMessageNext_3_0 C_EncryptMessageNext;
	CK_C_MessageFinal_3_0 C_MessageEncryptFinal;
	CK_C_MessageInit_3_0 C_MessageDecryptInit;
	CK_C_CryptMessage_3_0 C_DecryptMessage;
	CK_C_CryptMessageBegin_3_0 C_DecryptMessageBegin;
	CK_C_CryptMessageNext_3_0 C_DecryptMessageNext;
	CK_C_MessageFinal_3_0 C_MessageDecryptFinal;
	CK_C_MessageInit_3_0 C_MessageSignInit;
	CK_C_SignMessage_3_0 C_SignMessage;
	CK_C_MessageBegin_3_0 C_SignMessageBegin;
	CK_C_SignMessage_3_0 C_SignMessageNext;
	CK_C_MessageFinal_3_0 C_MessageSignFinal;
	CK_C_MessageInit_3_0 C_MessageVerifyInit;
	CK_C_VerifyMessage_3_0 C_VerifyMessage;
	CK_C_MessageBegin_3_0 C_VerifyMessageBegin;
	CK_C_VerifyMessage_3_0 C_VerifyMessageNext;
	CK_C_MessageFinal_3_0 C_MessageVerifyFinal;
} CK_FUNCTION_LIST_3_0;
typedef CK_FUNCTION_LIST_3_0 *CK_FUNCTION_LIST_3_0_PTR;
#endif

#endif
